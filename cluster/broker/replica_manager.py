"""The partitions this broker hosts: creating, opening, deleting their logs, and background log upkeep.

It owns the map (topic, partition) -> ``Partition`` and the single-node ``MetadataStore``.  Topic-level
behaviour (segment size, retention, max.message.bytes, ...) is resolved here from the topic's overrides and the
broker defaults into a ``LogConfig`` per topic.  Background work that Kafka's LogManager schedules lives here
too: retention (``log.retention.check.interval.ms``), time-based segment rolls and producer-id expiry.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
import uuid
from typing import Any

from cluster.broker.flusher import GroupCommitFlusher
from cluster.broker.metadata_store import MetadataStore, TopicRecord
from cluster.broker.partition import Partition
from cluster.config import BrokerConfig, resolve_topic_configs, validate_topic_configs
from cluster.core.errors import CorruptRecordError, ErrorCode
from cluster.storage.partition_log import LogConfig, PartitionLog

log = logging.getLogger("cluster.broker.replicas")

# Single node: the broker is the leader of every partition from epoch 0; the Raft issue makes this real.
INITIAL_LEADER_EPOCH = 0


def now_ms() -> int:
    """The broker's one wall-clock function (fault injection can skew it in one place)."""
    return int(time.time() * 1000)


class ReplicaManager:
    def __init__(self, config: BrokerConfig, store: MetadataStore, flusher: GroupCommitFlusher) -> None:
        self.config = config
        self.store = store
        self.flusher = flusher
        self.partitions: dict[tuple[str, int], Partition] = {}

    # lifecycle ------------------------------------------------------------------------------------------
    def open_all(self) -> None:
        """Opens (and if needed recovers) every partition log of every known topic."""
        started = time.monotonic()
        for record in list(self.store.topics.values()):
            for partition_index in range(record.num_partitions):
                self._open_partition(record, partition_index)
        log.info("opened %d partitions of %d topics in %.2f s", len(self.partitions), len(self.store.topics),
                 time.monotonic() - started)

    def close_all(self) -> None:
        for partition in self.partitions.values():
            partition.fail_waiters(ErrorCode.NOT_LEADER_OR_FOLLOWER)
            partition.log.close()
        self.partitions.clear()

    def _open_partition(self, record: TopicRecord, partition_index: int) -> Partition:
        directory = os.path.join(self.config.log_dir, f"{record.name}-{partition_index}")
        log_config = self.log_config_for(record)
        partition_log = PartitionLog.open(directory, log_config, now_ms())
        partition = Partition(record.name, partition_index, record.topic_id, partition_log, log_config,
                              INITIAL_LEADER_EPOCH, self.flusher.mark_dirty)
        self.partitions[(record.name, partition_index)] = partition
        return partition

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

    # topic changes (single-node controller decisions; the Raft issue moves them to the quorum) ---------
    def create_topic(self, name: str, num_partitions: int, replication_factor: int,
                     configs: dict[str, str]) -> TopicRecord:
        record = self.store.create_topic(name, num_partitions, replication_factor, configs)
        for partition_index in range(num_partitions):
            self._open_partition(record, partition_index)
        log.info("created topic %s (id %s) with %d partitions", name, record.topic_id, num_partitions)
        return record

    def add_partitions(self, name: str, new_count: int) -> None:
        record = self.store.topics[name]
        old_count = record.num_partitions
        self.store.set_partition_count(name, new_count)
        for partition_index in range(old_count, new_count):
            self._open_partition(record, partition_index)
        log.info("topic %s now has %d partitions (was %d)", name, new_count, old_count)

    def delete_topic(self, name: str) -> None:
        record = self.store.delete_topic(name)
        for partition_index in range(record.num_partitions):
            self._remove_replica(name, partition_index)
        log.info("deleted topic %s (id %s)", name, record.topic_id)

    def _remove_replica(self, name: str, partition_index: int) -> bool:
        """Stops serving a replica and deletes its log; False when this broker did not host it."""
        partition = self.partitions.pop((name, partition_index), None)
        if partition is None:
            return False
        partition.deleted = True
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
        """The partition if this broker leads it (single node: every partition it has)."""
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

    # cluster mode: committed metadata decides ----------------------------------------------------------
    def apply_local_changes(self, changes, image) -> None:
        """Acts on ``MetadataDelta.local_changes(node_id)``: delete removed replicas, open the logs of new
        ones, and take the leader epoch and role of each changed partition from the image.  Followers do
        not fetch from their leader yet (the replication issue adds that)."""
        for name, _topic_id, partition_index in changes.deletes:
            if self._remove_replica(name, partition_index):
                log.info("deleted replica %s-%d", name, partition_index)
        for is_leader, group in ((True, changes.leaders), (False, changes.followers)):
            for (name, partition_index), local in group.items():
                partition = self.partitions.get((name, partition_index))
                if partition is None:
                    record = self.store.topics[name]
                    partition = self._open_partition(record, partition_index)
                registration = local.registration
                was_leader = partition.is_leader
                partition.leader_epoch = registration.leader_epoch
                partition.leader_id = registration.leader
                partition.replicas = tuple(registration.replicas)
                partition.isr = tuple(registration.isr)
                partition.is_leader = is_leader
                if was_leader and not is_leader:
                    partition.fail_waiters(ErrorCode.NOT_LEADER_OR_FOLLOWER)

    # background upkeep --------------------------------------------------------------------------------
    async def run_log_upkeep(self) -> None:
        """Retention, time-based rolls, producer expiry and compaction, on Kafka's check interval (bounded to
        1 s..30 s between passes)."""
        interval_s = min(max(self.config.get("log.retention.check.interval.ms"), 1000), 300_000) / 1000
        while True:
            await asyncio.sleep(min(interval_s, 30.0))
            self.upkeep_once(now_ms())
            await self.clean_logs(now_ms())

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
