"""Runs the pure group coordinator inside the broker: requests in, timers, and the ``__consumer_offsets`` log.

``cluster.groups.coordinator.GroupCoordinator`` decides everything; this shell only does what it cannot:

* requests: each gets a token and a future; ``Reply`` effects resolve the futures, so a JoinGroup parked for
  a rebalance is simply a handler awaiting its future (Kafka's join/sync "purgatory");
* time: one ``loop.call_later`` armed at the coordinator's earliest deadline (heartbeats, join and sync
  phases, the initial rebalance delay), re-armed after every interaction;
* the log: ``AppendRecords`` effects become RecordBatches appended to ``__consumer_offsets``; the coordinator
  hears back only once the high watermark covers them (fsynced, ../shared/DESIGN.md, fixed decision 7), or after
  ``offsets.commit.timeout.ms`` with REQUEST_TIMED_OUT.  So an OffsetCommit is acknowledged only when durable;
* loading: the coordinator serves exactly the ``__consumer_offsets`` partitions this broker leads.  When it
  becomes a partition's leader (a new leader epoch: ``on_offsets_partitions_changed``, called by the metadata
  publisher on every metadata delta) it replays the partition from its log start to its log end (Kafka's
  GroupMetadataManager.loadGroupsForPartition), in chunks with a yield to the event loop between them; requests
  for those groups get COORDINATOR_LOAD_IN_PROGRESS meanwhile.  When it stops leading, the groups are dropped
  (NOT_COORDINATOR: clients look the coordinator up again).
* stale writes: a write is appended only while the partition's leader epoch is the one its groups were loaded
  in, and answered only once the high watermark covers it; if leadership moves first, the high-watermark wait
  fails (NOT_LEADER_OR_FOLLOWER) or the coordinator sees the epoch changed, and the client gets NOT_COORDINATOR.
* the topic: created on first use (FindCoordinator, or a Metadata request naming it) with
  ``offsets.topic.num.partitions`` partitions, replication factor min(``offsets.topic.replication.factor``,
  live brokers), ``cleanup.policy=compact``; an existing topic's partition count always wins.  The controller
  creates it (handlers/groups.py, metadata.py) and loading follows the metadata.
* retention: ``expire_offsets`` every ``offsets.retention.check.interval.ms``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from cluster.broker.replica_manager import ReplicaManager
from cluster.broker.waits import Pulse
from cluster.core.errors import CorruptRecordError, ErrorCode, KafkaError
from cluster.groups.coordinator import AppendRecords, GroupConfig, GroupCoordinator, JoinGroupResult, Reply
from cluster.metadata import NewTopic
from cluster.wire import records as wire_records

if TYPE_CHECKING:
    from cluster.broker.partition import Partition
    from cluster.config import BrokerConfig

log = logging.getLogger("cluster.broker.groups")

OFFSETS_TOPIC = "__consumer_offsets"
# Kafka's settings for the offsets topic (offsets.topic.segment.bytes, compaction).  A compact-only topic is
# never trimmed by time or size retention, so committed offsets live until a newer commit or a tombstone.
OFFSETS_TOPIC_CONFIGS = {"cleanup.policy": "compact", "segment.bytes": "104857600"}
# Loading reads and replays this much of the log between two yields to the event loop (~10 ms of decoding).
_LOAD_CHUNK_BYTES = 256 * 1024
_LOAD_RETRY_S = 1.0
_PRODUCE_VERSION = 9  # any version >= 7: our own batches are never compressed anyway


def offsets_topic_spec(config, live_broker_count: int) -> NewTopic:
    """What the controller is asked to create as ``__consumer_offsets`` (Kafka creates it on first use): the
    configured partition count, replication factor min(``offsets.topic.replication.factor``, live brokers)."""
    replication = min(config.get("offsets.topic.replication.factor"), max(live_broker_count, 1))
    return NewTopic(OFFSETS_TOPIC, config.get("offsets.topic.num.partitions"), replication,
                    configs=dict(OFFSETS_TOPIC_CONFIGS))


def _setting(config, key: str) -> int:
    """A group setting from the broker config (validated there, with Kafka's defaults)."""
    return config.get(key)


def group_config(config) -> GroupConfig:
    return GroupConfig(
        num_partitions=None,  # known once the topic exists
        initial_rebalance_delay_ms=_setting(config, "group.initial.rebalance.delay.ms"),
        min_session_timeout_ms=_setting(config, "group.min.session.timeout.ms"),
        max_session_timeout_ms=_setting(config, "group.max.session.timeout.ms"),
        max_group_size=_setting(config, "group.max.size"),
        offsets_retention_ms=_setting(config, "offsets.retention.minutes") * 60_000,
        offset_metadata_max_bytes=_setting(config, "offset.metadata.max.bytes"),
    )


def _new_member_id(prefix: str) -> str:
    """Kafka's member ids: client id (or group.instance.id) plus a random UUID."""
    return f"{prefix}-{uuid.uuid4()}"


class GroupCoordinatorRuntime:
    def __init__(self, config: BrokerConfig, replica_manager: ReplicaManager, on_rebalance: Callable[[], None]) -> None:
        self._replica_manager = replica_manager   # the offsets partitions: leadership, appends, reads
        self._now_ms = replica_manager.clock.wall_ms   # offset commit and expiry times are wall time, as in Kafka
        self._on_rebalance = on_rebalance         # counts a completed join phase (metrics)
        self.coordinator = GroupCoordinator(group_config(config), _new_member_id)
        self._commit_timeout_ms = _setting(config, "offsets.commit.timeout.ms")
        self._expiry_interval_ms = max(_setting(config, "offsets.retention.check.interval.ms"), 1)
        self._waiters: dict[Hashable, asyncio.Future] = {}
        self._tokens = itertools.count(1)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline_ms: int | None = None
        self._expiry_task: asyncio.Task | None = None
        self._stopped = False
        # Offsets partitions served or being loaded -> the leader epoch they were (are being) loaded in.
        self._epochs: dict[int, int] = {}
        self._loads: dict[int, asyncio.Task] = {}
        self._load_finished = Pulse()

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Loads the ``__consumer_offsets`` partitions this broker leads now, in the background (the Raft driver
        shares this event loop)."""
        self._follow_local_leadership()
        self._expiry_task = asyncio.create_task(self._expire_offsets_periodically(), name="offset-expiry")

    def stop(self) -> None:
        """Answers every parked request (NOT_COORDINATOR: clients look for the coordinator again)."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._expiry_task is not None:
            self._expiry_task.cancel()
        for index in list(self._epochs):
            self._unload(index)
        for future in self._waiters.values():
            if not future.done():
                future.set_exception(KafkaError(ErrorCode.COORDINATOR_NOT_AVAILABLE, "broker shutting down"))
        self._waiters.clear()

    def _follow_local_leadership(self) -> None:
        """Loads every offsets partition the replica manager says this broker leads."""
        led = {index: partition.leader_epoch
               for (topic, index), partition in list(self._replica_manager.partitions.items())
               if topic == OFFSETS_TOPIC and partition.is_leader}
        self._change_partitions(led, set())

    # -- following partition leadership -------------------------------------------------------------------
    def on_offsets_partitions_changed(self, led: dict[int, int], not_led: set[int]) -> None:
        """Leadership of ``__consumer_offsets`` partitions changed: ``led`` maps each partition this broker
        now leads to its leader epoch, ``not_led`` names those it no longer leads (follows, or lost).

        A partition led in a new epoch is (re)loaded from its log, even if we led it before: another leader
        may have written and our log been truncated meanwhile.  Called on every metadata delta; a partition
        still led in the epoch we loaded is left alone.
        """
        self._change_partitions(led, not_led)

    def _change_partitions(self, led: dict[int, int], not_led: set[int]) -> None:
        if self._stopped:
            return
        for index in not_led:
            if index in self._epochs:
                log.info("%s-%d: no longer leader; unloading its groups", OFFSETS_TOPIC, index)
                self._unload(index)
        wanted = {index: epoch for index, epoch in led.items() if self._epochs.get(index) != epoch}
        if not wanted or not self._know_partition_count():
            return
        for index, leader_epoch in sorted(wanted.items()):
            self._unload(index)
            self._epochs[index] = leader_epoch
            self.coordinator.begin_loading(index)  # from now on: COORDINATOR_LOAD_IN_PROGRESS
            self._loads[index] = asyncio.create_task(self._load_in_background(index, leader_epoch),
                                                     name=f"load-{OFFSETS_TOPIC}-{index}")

    def _know_partition_count(self) -> bool:
        """Takes the partition count from the topic (fixed once groups are loaded: group -> partition)."""
        record = self._replica_manager.store.topics.get(OFFSETS_TOPIC)
        if record is None:
            return False
        if self.coordinator.num_partitions != record.num_partitions:
            if self._epochs:
                log.error("%s has %d partitions, the coordinator %d: not following the change", OFFSETS_TOPIC,
                          record.num_partitions, self.coordinator.num_partitions)
                return self.coordinator.num_partitions is not None
            self.coordinator.set_partition_count(record.num_partitions)
        return True

    def _unload(self, index: int) -> None:
        """Stops serving partition ``index``: a load in progress is abandoned, its groups are dropped."""
        task = self._loads.pop(index, None)
        if task is not None:
            task.cancel()
        self._epochs.pop(index, None)
        self._apply(self.coordinator.unload_partition(index, self._now_ms()))

    async def wait_until(self, predicate, timeout_s: float) -> bool:
        """Waits (bounded) until ``predicate()`` holds, re-checking whenever a partition finishes loading."""
        return await self._load_finished.wait_until(predicate, timeout_s)

    def loading_partitions(self) -> set[int]:
        """Partitions whose load has not finished (tests, diagnostics)."""
        return {index for index in self._epochs if not self.coordinator.owns_partition(index)}

    # -- loading ---------------------------------------------------------------------------------------
    async def _load_in_background(self, index: int, leader_epoch: int) -> None:
        """Replays the partition one chunk at a time, yielding to the event loop in between.  A failed load
        (the log changed under us, a storage error) is retried while we still lead in this epoch; clients
        meanwhile keep getting COORDINATOR_LOAD_IN_PROGRESS and retry."""
        started = time.monotonic()
        while True:
            partition = self._replica_manager.get(OFFSETS_TOPIC, index)
            if partition is None or partition.leader_epoch != leader_epoch:
                # The metadata delta that moves leadership on is being applied; it unloads us.
                await asyncio.sleep(_LOAD_RETRY_S)
                continue
            count = 0
            try:
                for replayed in self._replay_chunks(index, partition):
                    count += replayed
                    await asyncio.sleep(0)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - retried below; the partition must not stay unserved for good
                log.exception("%s-%d: loading groups failed; retrying", OFFSETS_TOPIC, index)
                self._apply(self.coordinator.unload_partition(index, self._now_ms()))  # drops what was replayed
                self.coordinator.begin_loading(index)
                await asyncio.sleep(_LOAD_RETRY_S)
                continue
            break
        self._loads.pop(index, None)
        self._finish_load(index, leader_epoch, count, started)

    def _finish_load(self, index: int, leader_epoch: int, count: int, started: float) -> None:
        self._apply(self.coordinator.finish_loading(index, leader_epoch, self._now_ms()))
        self._load_finished.pulse()
        log.info("%s-%d: loaded %d records in leader epoch %d in %.3f s; serving its groups", OFFSETS_TOPIC, index,
                 count, leader_epoch, time.monotonic() - started)

    def _replay_chunks(self, index: int, partition: Partition):
        """Replays the partition from its log start to its log end (the leader's log is the truth: what lies
        above the high watermark becomes committed as followers catch up), yielding the number of records
        replayed after each chunk of at most ``_LOAD_CHUNK_BYTES``."""
        current_ms = self._now_ms()
        offset, log_end_offset = partition.log_start_offset, partition.log_end_offset
        while offset < log_end_offset:
            count = 0
            data = partition.log.read(offset, _LOAD_CHUNK_BYTES, log_end_offset)
            if not data:
                break
            for position, header in wire_records.iter_batch_headers(data):
                if not header.is_control:
                    batch = memoryview(data)[position:position + header.size_in_bytes]
                    count += self._replay_batch(index, batch, header.base_offset, current_ms)
                offset = header.next_offset
            yield count

    def _replay_batch(self, index: int, batch, base_offset: int, current_ms: int) -> int:
        """Replays one batch; a record we cannot read is logged and skipped rather than leaving the partition
        unserved (Kafka fails the load; losing one group's state is the lesser harm)."""
        try:
            decoded = wire_records.decode_records(batch)
        except CorruptRecordError as exc:
            log.error("%s-%d: skipping unreadable batch at offset %d: %s", OFFSETS_TOPIC, index, base_offset, exc)
            return 0
        count = 0
        for record in decoded:
            if record.key is None:
                continue
            try:
                self.coordinator.replay(index, record.key, record.value, current_ms)
                count += 1
            except CorruptRecordError as exc:
                log.error("%s-%d: skipping unreadable record at offset %d: %s", OFFSETS_TOPIC, index,
                          record.offset, exc)
        return count

    async def _expire_offsets_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._expiry_interval_ms / 1000)
            try:
                self._apply(self.coordinator.expire_offsets(self._now_ms()))
            except Exception:  # noqa: BLE001 - a bad record must not stop retention for good
                log.exception("offset expiration failed")

    # -- requests ---------------------------------------------------------------------------------------
    def submit(self, method: str, request: Any) -> Any:
        """Calls ``GroupCoordinator.<method>``; returns the result, or a future when the answer is deferred."""
        if self._stopped:
            raise KafkaError(ErrorCode.COORDINATOR_NOT_AVAILABLE, "broker shutting down")
        token = next(self._tokens)
        future = asyncio.get_running_loop().create_future()
        self._waiters[token] = future
        self._apply(getattr(self.coordinator, method)(token, request, self._now_ms()))
        if future.done():
            return future.result()
        return future

    # -- effects ----------------------------------------------------------------------------------------
    def _apply(self, effects: list) -> None:
        for effect in effects:
            if isinstance(effect, Reply):
                result = effect.result
                if isinstance(result, JoinGroupResult) and not result.error and result.member_id == result.leader_id:
                    self._on_rebalance()  # one leader reply per completed join phase
                future = self._waiters.pop(effect.token, None)
                if future is not None and not future.done():
                    future.set_result(effect.result)
            elif isinstance(effect, AppendRecords):
                self._start_append(effect)
        self._arm_timer()

    def _start_append(self, effect: AppendRecords) -> None:
        replica_manager = self._replica_manager
        partition = replica_manager.get(OFFSETS_TOPIC, effect.partition)
        current_ms = self._now_ms()
        if partition is None:
            self._finish_append(effect.append_id, replica_manager.missing_error(OFFSETS_TOPIC, effect.partition))
            return
        if partition.leader_epoch != self._epochs.get(effect.partition):
            # Led again in another epoch, not yet reloaded: our groups' state may be stale; write nothing.
            self._finish_append(effect.append_id, ErrorCode.NOT_LEADER_OR_FOLLOWER)
            return
        batch = wire_records.build_batch([(key, value, (), current_ms) for key, value in effect.records])
        try:
            _base_offset, last_offset, _ = partition.append_records(batch, current_ms, _PRODUCE_VERSION)
        except KafkaError as exc:
            log.warning("%s-%d: append failed: %s", OFFSETS_TOPIC, effect.partition, exc)
            self._finish_append(effect.append_id, exc.error_code)
            return
        durable = partition.wait_for_high_watermark(last_offset + 1)
        loop = asyncio.get_running_loop()
        timeout = loop.call_later(self._commit_timeout_ms / 1000, durable.cancel)

        def done(future: asyncio.Future, append_id: int = effect.append_id) -> None:
            timeout.cancel()
            if future.cancelled():
                error = ErrorCode.REQUEST_TIMED_OUT
            elif future.exception() is not None:
                exc = future.exception()
                error = exc.error_code if isinstance(exc, KafkaError) else ErrorCode.UNKNOWN_SERVER_ERROR
            else:
                error = ErrorCode.NONE
            self._finish_append(append_id, error)

        durable.add_done_callback(done)

    def _finish_append(self, append_id: int, error: ErrorCode) -> None:
        self._apply(self.coordinator.on_append_complete(append_id, error, self._now_ms()))

    def _arm_timer(self) -> None:
        if self._stopped:
            return
        deadline_ms = self.coordinator.next_deadline_ms()
        if deadline_ms is None:
            return
        if self._timer is not None and self._timer_deadline_ms is not None and self._timer_deadline_ms <= deadline_ms:
            return  # an earlier wake-up is already armed; it re-arms when it fires
        if self._timer is not None:
            self._timer.cancel()
        delay_s = max(deadline_ms - self._now_ms() + 1, 0) / 1000  # +1 ms: never wake just before the deadline
        self._timer = asyncio.get_running_loop().call_later(delay_s, self._on_timer)
        self._timer_deadline_ms = deadline_ms

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_deadline_ms = None
        self._apply(self.coordinator.advance_time(self._now_ms()))
