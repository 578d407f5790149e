"""The partitions this broker hosts: creating, opening, deleting their logs, their roles, and background upkeep.

It owns the map (topic, partition) -> ``Partition`` and reads topics from the committed image's view
(``ImageTopicStore``).  It turns committed metadata into roles (``apply_local_changes``: lead, follow, delete),
serves follower fetches as leader (``serve_replica_fetch``, long-polled), proposes ISR shrinks
(``run_isr_expiration``) and expansions, and checkpoints every partition's high watermark (Kafka's
``replication-offset-checkpoint``) so that a restarted replica knows what was committed.  Topic-level
behaviour (segment size, retention, max.message.bytes, ...) is resolved here from the topic's overrides and the
broker defaults into a ``LogConfig`` per topic.  Background work that Kafka's LogManager schedules lives here
too: retention (``log.retention.check.interval.ms``), time-based segment rolls and producer-id expiry.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import uuid
from typing import Any

from cluster.broker.flusher import GroupCommitFlusher
from cluster.broker.partition import Partition
from cluster.broker.topic_view import ImageTopicStore, TopicRecord
from cluster.config import BrokerConfig, resolve_topic_configs, validate_topic_configs
from cluster.core.clock import SystemClock
from cluster.core.errors import CorruptRecordError, ErrorCode, OffsetOutOfRangeError
from cluster.replication import PendingIsrChange
from cluster.storage.hw_checkpoint import read_high_watermarks, write_high_watermarks
from cluster.storage.partition_log import LogConfig, PartitionLog
from cluster.transport.replica_fetch_grpc import (
    PartitionFetch,
    PartitionFetchResult,
    ReplicaFetchRequest,
    ReplicaFetchResponse,
)

log = logging.getLogger("cluster.broker.replicas")


class ReplicaManager:
    def __init__(self, config: BrokerConfig, store: ImageTopicStore, flusher: GroupCommitFlusher,
                 clock: SystemClock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.store = store
        self.flusher = flusher
        self.partitions: dict[tuple[str, int], Partition] = {}
        self.node_id = config.node_id
        self.replica_lag_time_max_ms = config.get("replica.lag.time.max.ms")
        self._checkpointed_high_watermarks = read_high_watermarks(config.log_dir)
        # Set by the cluster runtime: sends a proposed ISR change to the controller (AlterPartition).
        self.send_isr_change = None
        # Set by the cluster runtime: the replica fetcher manager (followers) and broker epochs from the image.
        self.fetchers = None
        self.registered_broker_epoch = lambda broker_id: -1
        self._eligibility_brokers = None   # broker registrations the ISR eligibility was last computed from
        # Deliberate bugs the fault harnesses must catch (kraftpy.test.broken), switched on in the replica state.
        self._broken = tuple(config.get("kraftpy.test.broken"))

    # lifecycle ------------------------------------------------------------------------------------------
    def close_all(self) -> None:
        self.checkpoint_high_watermarks()
        for partition in self.partitions.values():
            partition.fail_waiters(ErrorCode.NOT_LEADER_OR_FOLLOWER)
            partition.log.close()
        self.partitions.clear()

    def _open_partition(self, record: TopicRecord, partition_index: int) -> Partition:
        directory = os.path.join(self.config.log_dir, f"{record.name}-{partition_index}")
        log_config = self.log_config_for(record)
        partition_log = PartitionLog.open(directory, log_config, self.clock.wall_ms())
        partition = Partition(record.name, partition_index, record.topic_id, partition_log, log_config,
                              self.node_id, self.flusher.mark_dirty,
                              self._checkpointed_high_watermarks.get((record.name, partition_index), 0),
                              broken=self._broken)
        self.partitions[(record.name, partition_index)] = partition
        return partition

    def min_insync_replicas(self, topic: str) -> int:
        record = self.store.topics.get(topic)
        if record is None:
            return self.config.get("min.insync.replicas")
        return int(self.topic_configs(record)["min.insync.replicas"][0])

    # high watermark checkpoint ----------------------------------------------------------------------
    def _high_watermarks(self) -> dict[tuple[str, int], int]:
        return {key: partition.high_watermark for key, partition in self.partitions.items() if not partition.deleted}

    def checkpoint_high_watermarks(self) -> None:
        """Kafka's replication-offset-checkpoint: where each replica's committed data ends, for its restart."""
        try:
            write_high_watermarks(self.config.log_dir, self._high_watermarks())
        except OSError as exc:
            log.error("cannot write the high watermark checkpoint: %s", exc)

    async def run_high_watermark_checkpoints(self) -> None:
        interval_s = self.config.get("replica.high.watermark.checkpoint.interval.ms") / 1000
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval_s)
            try:
                await loop.run_in_executor(None, write_high_watermarks, self.config.log_dir, self._high_watermarks())
            except OSError as exc:
                log.error("cannot write the high watermark checkpoint: %s", exc)

    # topic configuration ------------------------------------------------------------------------------
    def topic_configs(self, record: TopicRecord) -> dict[str, tuple[Any, int]]:
        """Every topic config of ``record`` with its effective value and DescribeConfigs source."""
        return resolve_topic_configs(self.config, validate_topic_configs(record.configs))

    def log_config_for(self, record: TopicRecord) -> LogConfig:
        values = {key: value for key, (value, _source) in self.topic_configs(record).items()}
        return LogConfig(
            segment_bytes=values["segment.bytes"],
            segment_ms=values["segment.ms"],
            retention_ms=values["retention.ms"],
            retention_bytes=values["retention.bytes"],
            index_interval_bytes=values["index.interval.bytes"],
            max_message_bytes=values["max.message.bytes"],
            message_timestamp_type=values["message.timestamp.type"],
            file_delete_delay_ms=values["file.delete.delay.ms"],
            segment_jitter_ms=values["segment.jitter.ms"],
            segment_index_bytes=values["segment.index.bytes"],
            cleanup_policy=tuple(values["cleanup.policy"]),
            delete_retention_ms=values["delete.retention.ms"],
            min_compaction_lag_ms=values["min.compaction.lag.ms"],
            min_cleanable_dirty_ratio=float(values["min.cleanable.dirty.ratio"]),
        )

    def _remove_replica(self, name: str, partition_index: int) -> bool:
        """Stops serving a replica and deletes its log; False when this broker did not host it."""
        partition = self.partitions.pop((name, partition_index), None)
        if partition is None:
            return False
        partition.deleted = True
        if self.fetchers is not None:
            self.fetchers.remove(partition)
        partition.fail_waiters(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        partition.log.close()
        self._remove_directory_later(os.path.join(self.config.log_dir, f"{name}-{partition_index}"))
        return True

    def _remove_directory_later(self, directory: str) -> None:
        """Renames first (like Kafka's ``-delete`` suffix) so a re-created topic never sees old files."""
        if not os.path.isdir(directory):
            return
        doomed = f"{directory}.{uuid.uuid4().hex}-delete"
        os.rename(directory, doomed)
        asyncio.get_running_loop().run_in_executor(None, shutil.rmtree, doomed, True)

    def get(self, topic: str, partition_index: int) -> Partition | None:
        """The partition if this broker leads it."""
        partition = self.partitions.get((topic, partition_index))
        if partition is not None and not partition.is_leader:
            return None
        return partition

    def missing_error(self, topic: str, partition_index: int) -> ErrorCode:
        """Why ``get`` returned None: a follower replica answers NOT_LEADER_OR_FOLLOWER (clients refresh
        metadata and go to the leader), anything else UNKNOWN_TOPIC_OR_PARTITION."""
        if (topic, partition_index) in self.partitions:
            return ErrorCode.NOT_LEADER_OR_FOLLOWER
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION

    # committed metadata decides ----------------------------------------------------------
    def apply_local_changes(self, changes, image) -> None:
        """Acts on ``MetadataDelta.local_changes(node_id)``: delete removed replicas, open the logs of new ones,
        make this broker leader or follower of each changed partition, and tell every led partition which of
        its followers may be in the ISR (fenced or shutting-down brokers may not)."""
        for name, _topic_id, partition_index in changes.deletes:
            if self._remove_replica(name, partition_index):
                log.info("deleted replica %s-%d", name, partition_index)
        current_ms = self.clock.wall_ms()
        for (name, partition_index), local in changes.leaders.items():
            partition = self._partition_for(name, partition_index)
            registration = local.registration
            partition.become_leader(
                registration.leader_epoch, registration.partition_epoch, registration.replicas, registration.isr,
                current_ms, self.replica_lag_time_max_ms, self.min_insync_replicas(name))
            if self.fetchers is not None:
                self.fetchers.remove(partition)
        for (name, partition_index), local in changes.followers.items():
            partition = self._partition_for(name, partition_index)
            registration = local.registration
            partition.become_follower(registration.leader, registration.leader_epoch, registration.replicas,
                                      registration.isr, current_ms, self.config.get("replica.fetch.backoff.ms"))
            if self.fetchers is not None:
                self.fetchers.update(partition)
        # Eligibility depends on broker registrations and on each led partition's followers: all led partitions
        # when a registration changed, else only those whose replica set may have (not O(partitions) per commit).
        brokers = image.cluster.brokers
        changed = None if brokers != self._eligibility_brokers else [
            self.partitions[key] for key in changes.leaders if key in self.partitions]
        self._eligibility_brokers = brokers
        self.refresh_isr_eligibility(image, changed)

    def remove_stray_logs(self) -> list[str]:
        """Deletes partition directories that committed metadata no longer assigns to this broker (a topic
        deleted, or a replica moved away, while this broker was down).  Called only once this broker has
        caught up with the metadata log, so "not assigned" is a fact, not a gap in what we know."""
        removed = []
        for name in sorted(os.listdir(self.config.log_dir)):
            topic, dash, index = name.rpartition("-")
            if not dash or not index.isdigit() or topic.startswith("__cluster_metadata"):
                continue
            directory = os.path.join(self.config.log_dir, name)
            if not os.path.isdir(directory) or (topic, int(index)) in self.partitions:
                continue
            log.warning("removing stray partition directory %s: no longer assigned to broker %d by the metadata",
                        directory, self.node_id)
            self._remove_directory_later(directory)
            removed.append(name)
        return removed

    def _partition_for(self, name: str, partition_index: int) -> Partition:
        partition = self.partitions.get((name, partition_index))
        if partition is None:
            partition = self._open_partition(self.store.topics[name], partition_index)
        return partition

    def refresh_isr_eligibility(self, image, partitions=None) -> None:
        """Kafka's isReplicaIsrEligible: a fenced broker, or one in controlled shutdown, cannot join an ISR and
        does not hold back the high watermark unless it is already in the ISR.  ``partitions``: only these
        (default: every partition this broker hosts)."""
        brokers = image.cluster.brokers

        def is_active(broker_id: int) -> bool:
            registration = brokers.get(broker_id)
            return registration is not None and registration.is_active
        for partition in (self.partitions.values() if partitions is None else partitions):
            if partition.replica.refresh_isr_eligibility(is_active):
                partition.on_high_watermark_maybe_changed()

    # leader: serving follower fetches -------------------------------------------------------------------
    async def serve_replica_fetch(self, request: ReplicaFetchRequest) -> ReplicaFetchResponse:
        """One follower fetch: records progress (which may advance the high watermark and expand the ISR),
        then returns data from each fetch offset, long-polling up to ``max_wait_ms`` while there is none."""
        registered_epoch = self.registered_broker_epoch(request.replica_id)
        current_ms = self.clock.wall_ms()
        served = [self._follower_fetch(fetch, request, registered_epoch, current_ms) for fetch in request.partitions]
        budget = request.max_bytes
        if request.max_wait_ms > 0 and all(parks for _p, _f, _r, parks in served):
            await self._wait_for_appends([p for p, _f, _r, _parks in served], request.max_wait_ms)
        response = ReplicaFetchResponse()
        for partition, fetch, result, _parks in served:
            if partition is not None and budget > 0:
                budget -= self._read_for_follower(partition, fetch, result, budget)
            response.partitions.append(result)
        return response

    def _follower_fetch(self, fetch: PartitionFetch, request: ReplicaFetchRequest, registered_epoch: int,
                        current_ms: int) -> tuple[Partition | None, PartitionFetch, PartitionFetchResult, bool]:
        """The replica state's answer to one partition of the fetch: (the partition when the answer reads
        records, the fetch, the answer so far, whether it may be parked until our log grows)."""
        result = PartitionFetchResult(fetch.topic_id, fetch.partition)
        record = self.store.topic_by_id(fetch.topic_id)
        partition = self.partitions.get((record.name, fetch.partition)) if record is not None else None
        if partition is None:
            result.error_code = int(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
            return None, fetch, result, False
        answer = partition.replica.answer_follower_fetch(request.replica_id, request.broker_epoch, registered_epoch,
                                                         fetch, current_ms)
        result.error_code = int(answer.error_code)
        result.high_watermark = answer.high_watermark
        result.log_start_offset = answer.log_start_offset
        if answer.diverging_epoch is not None:
            result.diverging_epoch = (answer.diverging_epoch.leader_epoch, answer.diverging_epoch.end_offset)
        if answer.high_watermark_advanced:
            partition.on_high_watermark_maybe_changed()
        if answer.isr_change is not None:
            self._propose_isr_change(partition, answer.isr_change)
        if not answer.reads_records:
            return None, fetch, result, False
        return partition, fetch, result, partition.replica.parks_follower_fetch(fetch, answer)

    async def _wait_for_appends(self, partitions: list[Partition], max_wait_ms: int) -> None:
        event = asyncio.Event()
        for partition in partitions:
            partition.add_append_watcher(event)
        try:
            await asyncio.wait_for(event.wait(), max_wait_ms / 1000)
        except TimeoutError:
            pass
        finally:
            for partition in partitions:
                partition.remove_append_watcher(event)

    @staticmethod
    def _read_for_follower(partition: Partition, fetch: PartitionFetch, result: PartitionFetchResult,
                           budget: int) -> int:
        if partition.leader_state is None or partition.deleted:
            result.error_code = int(ErrorCode.NOT_LEADER_OR_FOLLOWER)
            return 0
        try:
            data = partition.log.read(fetch.fetch_offset, min(fetch.partition_max_bytes, budget),
                                      partition.log_end_offset)
        except OffsetOutOfRangeError:
            result.error_code = int(ErrorCode.OFFSET_OUT_OF_RANGE)
            return 0
        result.records = data
        result.log_end_offset = partition.log_end_offset
        result.high_watermark = partition.high_watermark
        result.log_start_offset = partition.log_start_offset
        return len(data)

    # leader: ISR changes --------------------------------------------------------------------------------
    def _propose_isr_change(self, partition: Partition, change: PendingIsrChange) -> None:
        log.info("%s: proposing ISR %s -> %s (%s)", partition, list(change.last_committed_isr), list(change.new_isr),
                 change.kind.value)
        if self.send_isr_change is not None:
            self.send_isr_change(partition, change)

    async def run_isr_expiration(self) -> None:
        """Kafka's isr-expiration task: every half ``replica.lag.time.max.ms``, propose dropping lagging followers."""
        interval_s = max(self.replica_lag_time_max_ms / 2, 50) / 1000
        while True:
            await asyncio.sleep(interval_s)
            current_ms = self.clock.wall_ms()
            for partition in list(self.partitions.values()):
                change = partition.replica.maybe_shrink_isr(current_ms)
                if change is not None:
                    self._propose_isr_change(partition, change)

    # background upkeep --------------------------------------------------------------------------------
    async def run_log_upkeep(self) -> None:
        """Retention, time-based rolls, producer expiry and compaction, on Kafka's check interval (bounded to
        1 s..30 s between passes)."""
        interval_s = min(max(self.config.get("log.retention.check.interval.ms"), 1000), 300_000) / 1000
        while True:
            await asyncio.sleep(min(interval_s, 30.0))
            self.upkeep_once(self.clock.wall_ms())
            await self.clean_logs(self.clock.wall_ms())

    def upkeep_once(self, current_ms: int) -> None:
        expiration_ms = self.config.get("producer.id.expiration.ms")
        for partition in list(self.partitions.values()):
            try:
                partition.log.maybe_roll(current_ms)
                deleted = partition.log.delete_old_segments(current_ms)
                if deleted:
                    log.info("%s: retention deleted %d segment(s), log start offset now %d", partition, deleted,
                             partition.log_start_offset)
                partition.producer_state.expire(current_ms, expiration_ms)
            except OSError:
                log.exception("%s: log upkeep failed", partition)

    async def clean_logs(self, current_ms: int) -> int:
        """Compaction of every partition whose cleanup.policy includes compact: the plan and the segment swap
        run on the event loop, the reading and rewriting in a worker thread, so produce and fetch go on.
        Returns the number of segments swapped."""
        loop = asyncio.get_running_loop()
        swapped = 0
        for key, partition in list(self.partitions.items()):
            if not partition.log_config.compact or partition.deleted:
                continue
            try:
                task = partition.log.prepare_cleaning(current_ms, partition.high_watermark)
                if task is None:
                    continue
                try:
                    await loop.run_in_executor(None, task.run)
                except (OSError, CorruptRecordError) as exc:
                    log.error("%s: log cleaning failed: %s", partition, exc)
                if self.partitions.get(key) is partition and not partition.deleted:
                    swapped += partition.log.complete_cleaning(task)
                else:
                    task.close()
            except OSError:
                log.exception("%s: log cleaning failed", partition)
        return swapped
