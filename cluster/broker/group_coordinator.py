"""Runs the pure group coordinator inside the broker: requests in, timers, and the ``__consumer_offsets`` log.

``cluster.groups.coordinator.GroupCoordinator`` decides everything; this shell only does what it cannot:

* requests: each gets a token and a future; ``Reply`` effects resolve the futures, so a JoinGroup parked for
  a rebalance is simply a handler awaiting its future (Kafka's join/sync "purgatory");
* time: one ``loop.call_later`` armed at the coordinator's earliest deadline (heartbeats, join and sync
  phases, the initial rebalance delay), re-armed after every interaction;
* the log: ``AppendRecords`` effects become RecordBatches appended to ``__consumer_offsets``; the coordinator
  hears back only once the high watermark covers them (fsynced, DESIGN.md §7), or after
  ``offsets.commit.timeout.ms`` with REQUEST_TIMED_OUT.  So an OffsetCommit is acknowledged only when durable;
* loading: on start every existing ``__consumer_offsets`` partition is replayed (it is the coordinator's
  state).  The topic itself is created on first use (FindCoordinator, or a Metadata request naming it) with
  ``offsets.topic.num.partitions`` partitions, replication factor min(``offsets.topic.replication.factor``,
  live brokers), ``cleanup.policy=compact``; an existing topic's partition count always wins.
* retention: ``expire_offsets`` every ``offsets.retention.check.interval.ms``.

Single node: this broker leads every partition of the topic, so it coordinates every group.  When partition
leadership moves (the replication issue), ``begin_loading``/``finish_loading``/``unload_partition`` are the
hooks to call on becoming or ceasing to be a partition's leader.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from cluster.broker.replica_manager import now_ms
from cluster.core.errors import CorruptRecordError, ErrorCode, KafkaError
from cluster.groups.coordinator import AppendRecords, GroupConfig, GroupCoordinator, JoinGroupResult, Reply
from cluster.wire import records as wire_records

if TYPE_CHECKING:
    from cluster.broker.app import Broker
    from cluster.broker.partition import Partition

log = logging.getLogger("cluster.broker.groups")

OFFSETS_TOPIC = "__consumer_offsets"
# Kafka's settings for the offsets topic (offsets.topic.segment.bytes, compaction).  A compact-only topic is
# never trimmed by time or size retention, so committed offsets live until a newer commit or a tombstone.
OFFSETS_TOPIC_CONFIGS = {"cleanup.policy": "compact", "segment.bytes": "104857600"}
_LOAD_READ_BYTES = 4 * 1024 * 1024
_PRODUCE_VERSION = 9  # any version >= 7: our own batches are never compressed anyway

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
    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self.coordinator = GroupCoordinator(group_config(broker.config), _new_member_id)
        self._commit_timeout_ms = _setting(broker.config, "offsets.commit.timeout.ms")
        self._expiry_interval_ms = max(_setting(broker.config, "offsets.retention.check.interval.ms"), 1)
        self._waiters: dict[Hashable, asyncio.Future] = {}
        self._tokens = itertools.count(1)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline_ms: int | None = None
        self._expiry_task: asyncio.Task | None = None
        self._stopped = False

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Loads the groups and offsets of an existing ``__consumer_offsets`` topic (before we listen)."""
        record = self._broker.replica_manager.store.topics.get(OFFSETS_TOPIC)
        if record is not None:
            self._load_topic(record.num_partitions)
        self._expiry_task = asyncio.create_task(self._expire_offsets_periodically(), name="offset-expiry")

    def stop(self) -> None:
        """Answers every parked request (NOT_COORDINATOR: clients look for the coordinator again)."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._expiry_task is not None:
            self._expiry_task.cancel()
        if self.coordinator.num_partitions is not None:
            for partition in range(self.coordinator.num_partitions):
                self._apply(self.coordinator.unload_partition(partition, now_ms()))
        for future in self._waiters.values():
            if not future.done():
                future.set_exception(KafkaError(ErrorCode.COORDINATOR_NOT_AVAILABLE, "broker shutting down"))
        self._waiters.clear()

    def ensure_offsets_topic(self) -> None:
        """Creates ``__consumer_offsets`` on first use, as Kafka does on the first FindCoordinator."""
        if self.coordinator.num_partitions is not None or self._stopped:
            return
        broker = self._broker
        store = broker.replica_manager.store
        if OFFSETS_TOPIC not in store.topics:
            partitions = broker.config.get("offsets.topic.num.partitions")
            replication = min(broker.config.get("offsets.topic.replication.factor"), len(broker.live_brokers()))
            broker.replica_manager.create_topic(OFFSETS_TOPIC, partitions, replication, dict(OFFSETS_TOPIC_CONFIGS))
        self._load_topic(store.topics[OFFSETS_TOPIC].num_partitions)

    def _load_topic(self, num_partitions: int) -> None:
        started = time.monotonic()
        self.coordinator.set_partition_count(num_partitions)
        loaded = 0
        for index in range(num_partitions):
            partition = self._broker.replica_manager.get(OFFSETS_TOPIC, index)
            if partition is not None:
                loaded += self._load_partition(index, partition)
        log.info("loaded %d __consumer_offsets records of %d partitions (%d groups) in %.3f s", loaded,
                 num_partitions, len(self.coordinator.group_ids()), time.monotonic() - started)

    def _load_partition(self, index: int, partition: Partition) -> int:
        """Replays one partition up to its high watermark (only durable records are state)."""
        self.coordinator.begin_loading(index)
        current_ms = now_ms()
        offset, high_watermark, count = partition.log_start_offset, partition.high_watermark, 0
        while offset < high_watermark:
            data = partition.log.read(offset, _LOAD_READ_BYTES, high_watermark)
            if not data:
                break
            for position, header in wire_records.iter_batch_headers(data):
                if not header.is_control:
                    batch = memoryview(data)[position:position + header.size_in_bytes]
                    count += self._replay_batch(index, batch, header.base_offset, current_ms)
                offset = header.next_offset
        self._apply(self.coordinator.finish_loading(index, partition.leader_epoch, now_ms()))
        return count

    def _replay_batch(self, index: int, batch, base_offset: int, current_ms: int) -> int:
        """Replays one batch; a record we cannot read is logged and skipped rather than keeping the broker
        down (Kafka fails the load; losing one group's state is the lesser harm on a single node)."""
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
                self._apply(self.coordinator.expire_offsets(now_ms()))
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
        self._apply(getattr(self.coordinator, method)(token, request, now_ms()))
        if future.done():
            return future.result()
        return future

    def coordinator_node(self, key: str) -> tuple[ErrorCode, tuple[int, str, int] | None]:
        """FindCoordinator: the broker leading the group's ``__consumer_offsets`` partition."""
        try:
            self.ensure_offsets_topic()
        except KafkaError as exc:
            log.warning("cannot create %s: %s", OFFSETS_TOPIC, exc)
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, None
        if self.coordinator.num_partitions is None:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, None
        if not self.coordinator.owns_partition(self.coordinator.partition_of(key)):
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, None
        node_id, host, port, _rack = self._broker.live_brokers()[0]
        return ErrorCode.NONE, (node_id, host, port)

    # -- effects ----------------------------------------------------------------------------------------
    def _apply(self, effects: list) -> None:
        for effect in effects:
            if isinstance(effect, Reply):
                result = effect.result
                if isinstance(result, JoinGroupResult) and not result.error and result.member_id == result.leader_id:
                    self._broker.metrics_on_rebalance()  # one leader reply per completed join phase
                future = self._waiters.pop(effect.token, None)
                if future is not None and not future.done():
                    future.set_result(effect.result)
            elif isinstance(effect, AppendRecords):
                self._start_append(effect)
        self._arm_timer()

    def _start_append(self, effect: AppendRecords) -> None:
        partition = self._broker.replica_manager.get(OFFSETS_TOPIC, effect.partition)
        current_ms = now_ms()
        if partition is None:
            self._finish_append(effect.append_id, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
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
        self._apply(self.coordinator.on_append_complete(append_id, error, now_ms()))

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
        delay_s = max(deadline_ms - now_ms() + 1, 0) / 1000  # +1 ms: never wake just before the deadline
        self._timer = asyncio.get_running_loop().call_later(delay_s, self._on_timer)
        self._timer_deadline_ms = deadline_ms

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_deadline_ms = None
        self._apply(self.coordinator.advance_time(now_ms()))
