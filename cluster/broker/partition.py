"""One partition replica hosted by this broker: its log, producer state, role (leader or follower) and waiters.

This is the shell around ``PartitionLog`` that request handlers, the replica fetcher and the leader's fetch
service use: it does the I/O (log reads and writes, waiters) and leaves every replication decision to the pure
state machines of cluster/replication, which the replication simulator drives too: ``PartitionReplicaState``
(role transitions, producer state, the leader's answer to follower fetches) and within it, as leader a
``PartitionLeaderState`` (follower progress, ISR changes, high watermark over fsynced offsets, acks=all), as
follower a ``FollowerFetchState`` (what to fetch, when to truncate).  A single node is a leader whose ISR is
itself, so the same code path runs everywhere and the high watermark is always the minimum *fsynced* log end
offset over the ISR (../shared/DESIGN.md, fixed decision 7).

Waiters: ``acks=all`` produces wait until the leader state says their last offset is committed; long-polling
consumer fetches wait for the high watermark to move; follower fetches served here wait for the log end offset
to move (they copy data before it is durable on the leader, so both fsyncs overlap).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence

from cluster.core.errors import ErrorCode, KafkaError, invariant
from cluster.replication import FollowerFetchState, PartitionLeaderState
from cluster.replication.producer_state import ProducerStateTable
from cluster.replication.replica import NO_LEADER, PartitionReplicaState
from cluster.storage.partition_log import LogConfig, PartitionLog
from cluster.wire import records

__all__ = ["NO_LEADER", "Partition"]

log = logging.getLogger("cluster.broker.partition")

COMPRESSION_ZSTD = 4


class Partition:
    """A partition replica: its log, waiters and the pure role state machine (``replica``) that decides."""

    def __init__(self, topic: str, partition_index: int, topic_id: uuid.UUID, partition_log: PartitionLog,
                 log_config: LogConfig, local_broker_id: int, on_dirty: Callable[[Partition], None],
                 high_watermark: int = 0, broken: Iterable[str] = ()) -> None:
        self.topic = topic
        self.partition_index = partition_index
        self.topic_id = topic_id
        self.log = partition_log
        self.log_config = log_config
        self.local_broker_id = local_broker_id
        self.replica = PartitionReplicaState(topic_id, partition_index, local_broker_id, self,
                                             high_watermark=high_watermark, broken=broken)
        self._on_dirty = on_dirty
        self._ack_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._hw_watchers: set[asyncio.Event] = set()
        self._append_watchers: set[asyncio.Event] = set()
        self.fetcher_wakeup: asyncio.Event | None = None   # set by the replica fetcher that follows for us
        self.deleted = False
        self._rebuild_producer_state()

    def __repr__(self) -> str:
        return f"Partition({self.topic}-{self.partition_index})"

    # -- views ------------------------------------------------------------------------------------------------
    @property
    def leader_state(self) -> PartitionLeaderState | None:
        return self.replica.leader_state

    @property
    def follower_state(self) -> FollowerFetchState | None:
        return self.replica.follower_state

    @property
    def producer_state(self) -> ProducerStateTable:
        return self.replica.producer_state

    @property
    def leader_epoch(self) -> int:
        return self.replica.leader_epoch

    @property
    def leader_id(self) -> int:
        return self.replica.leader_id

    @property
    def replicas(self) -> tuple[int, ...]:
        return self.replica.replicas

    @property
    def isr(self) -> tuple[int, ...]:
        return self.replica.isr

    @property
    def is_leader(self) -> bool:
        return self.replica.leader_state is not None

    @property
    def high_watermark(self) -> int:
        """Offsets below are committed: durable on every ISR member and visible to consumers."""
        return self.replica.high_watermark

    @property
    def log_start_offset(self) -> int:
        return self.log.log_start_offset

    @property
    def log_end_offset(self) -> int:
        return self.log.log_end_offset

    @property
    def durable_log_end_offset(self) -> int:
        """Everything below is fsynced (the log's recovery point)."""
        return self.log.recovery_point

    @property
    def latest_epoch(self) -> int:
        latest = self.log.latest_epoch
        return -1 if latest is None else latest

    def end_offset_for_epoch(self, leader_epoch: int) -> tuple[int, int]:
        return self.log.end_offset_for_epoch(leader_epoch)

    # -- roles ------------------------------------------------------------------------------------------------
    def become_leader(self, leader_epoch: int, partition_epoch: int, replicas: Sequence[int], isr: Sequence[int],
                      now_ms: int, replica_lag_time_max_ms: int, min_insync_replicas: int) -> bool:
        """Committed metadata names this broker leader.  Returns True when a new leader epoch began here."""
        change = self.replica.become_leader(leader_epoch, partition_epoch, replicas, isr, now_ms,
                                            replica_lag_time_max_ms, min_insync_replicas)
        if change.assign_epoch_start:
            self.log.assign_epoch_start(leader_epoch)   # before any write (KAFKA-7415)
        self.on_high_watermark_maybe_changed()
        if change.new_leader_epoch:
            log.info("%s: leader in epoch %d (replicas %s, isr %s, log end offset %d, high watermark %d)", self,
                     leader_epoch, list(replicas), list(isr), self.log.log_end_offset, self.high_watermark)
        return change.new_leader_epoch

    def become_follower(self, leader_id: int, leader_epoch: int, replicas: Sequence[int], isr: Sequence[int],
                        now_ms: int, fetch_backoff_ms: int) -> bool:
        """Committed metadata names another leader (or none).  Returns True when fetching (re)started."""
        change = self.replica.become_follower(leader_id, leader_epoch, replicas, isr, now_ms, fetch_backoff_ms)
        if change.stopped_leading:
            self.fail_waiters(ErrorCode.NOT_LEADER_OR_FOLLOWER)
        if change.fetch_restarted:
            log.info("%s: follower of broker %d in epoch %d (log end offset %d, high watermark %d)", self,
                     leader_id, leader_epoch, self.log.log_end_offset, self.high_watermark)
        return change.fetch_restarted

    def _rebuild_producer_state(self) -> None:
        """Replays every idempotent batch header in the log so retries stay deduplicated across restarts and
        leadership changes (a follower that becomes leader knows every producer the old leader knew)."""
        self.replica.producer_state = ProducerStateTable()
        for header in self.log.iter_batch_headers(self.log.log_start_offset):
            self._replay_producer(header)

    def _replay_producer(self, header) -> None:
        if header.producer_id >= 0 and not header.is_control:
            self.producer_state.replay(header.producer_id, header.producer_epoch, header.base_sequence,
                                       header.last_offset_delta, header.base_offset, header.max_timestamp)

    def check_leader_epoch(self, current_leader_epoch: int) -> None:
        """KIP-320 fencing: a client that knows a newer epoch is ahead of us, an older one is stale."""
        if current_leader_epoch < 0 or current_leader_epoch == self.leader_epoch:
            return
        if current_leader_epoch > self.leader_epoch:
            raise KafkaError(ErrorCode.UNKNOWN_LEADER_EPOCH, f"{self}: epoch {current_leader_epoch} unknown")
        raise KafkaError(ErrorCode.FENCED_LEADER_EPOCH, f"{self}: epoch {current_leader_epoch} is fenced")

    # -- leader: appends ------------------------------------------------------------------------------------------
    def append_records(self, batch_bytes: bytes | memoryview, now_ms: int, produce_version: int,
                       required_acks: int = -1) -> tuple[int, int, int]:
        """Validates and appends one producer batch; returns (base_offset, last_offset, log_append_time_ms).

        A duplicate of a recently appended idempotent batch is not appended again: its original offsets are
        returned.  Raises KafkaError with the Kafka error code for every rejected batch (NOT_ENOUGH_REPLICAS
        first of all when acks=all and the ISR is below min.insync.replicas); the log is untouched in that case.
        """
        replica = self.replica
        replica.check_append_allowed(required_acks)   # first: see there why
        if len(batch_bytes) > self.log_config.max_message_bytes:
            raise KafkaError(ErrorCode.MESSAGE_TOO_LARGE,
                             f"batch of {len(batch_bytes)} bytes exceeds max.message.bytes "
                             f"{self.log_config.max_message_bytes}")
        header = records.validate_batch(batch_bytes)
        if header.compression_type == COMPRESSION_ZSTD and produce_version < 7:
            raise KafkaError(ErrorCode.UNSUPPORTED_COMPRESSION_TYPE, "zstd needs Produce v7 or later")
        if header.is_transactional or header.is_control:
            raise KafkaError(ErrorCode.INVALID_RECORD, "transactions are not supported yet")
        if self.log_config.compact:
            self._check_keys(batch_bytes)
        duplicate = replica.check_producer_sequence(header.producer_id, header.producer_epoch, header.base_sequence,
                                                    header.last_offset_delta)
        if duplicate is not None:
            return duplicate.base_offset, duplicate.last_offset, -1
        batch = bytearray(batch_bytes)
        log_append_time_ms = -1
        if self.log_config.message_timestamp_type == "LogAppendTime":
            records.set_log_append_time(batch, now_ms)
            log_append_time_ms = now_ms
        try:
            base_offset, last_offset = self.log.append(batch, header, self.leader_epoch, now_ms)
        except OSError as exc:
            # Disk full or failing: the log rolled back its partial write; the client may retry.
            log.error("%s: append failed: %s", self, exc)
            raise KafkaError(ErrorCode.KAFKA_STORAGE_ERROR, f"append failed: {exc.strerror}") from None
        invariant(last_offset - base_offset == header.last_offset_delta, "offsets assigned to the whole batch")
        replica.on_leader_append(header.producer_id, header.producer_epoch, header.base_sequence,
                                 header.last_offset_delta, base_offset, header.max_timestamp, now_ms)
        self._on_dirty(self)
        self._wake(self._append_watchers)
        return base_offset, last_offset, log_append_time_ms

    def _check_keys(self, batch_bytes) -> None:
        """A compacted topic keeps the latest record per key, so a record without a key is invalid (Kafka's
        LogValidator); the only place produce decodes records."""
        try:
            keyless = any(record.key is None for record in records.decode_records(batch_bytes))
        except KafkaError:
            raise
        except Exception as exc:  # noqa: BLE001 - undecodable records are corrupt whatever the cause
            raise KafkaError(ErrorCode.CORRUPT_MESSAGE, f"{self}: cannot decode records: {exc}") from None
        if keyless:
            raise KafkaError(ErrorCode.INVALID_RECORD,
                             f"compacted topic cannot accept message without key in topic partition {self}")

    # -- follower: appends and truncation ----------------------------------------------------------------------
    def append_as_follower(self, batches: bytes, now_ms: int) -> None:
        """Appends batches fetched from the leader (offsets and epochs as the leader wrote them)."""
        if not batches:
            return
        appended = self.log.append_as_follower(batches, now_ms)
        if appended is None:
            return
        first_offset, _last = appended
        for _position, header in records.iter_batch_headers(memoryview(batches)):
            if header.base_offset >= first_offset and header.last_offset < self.log.log_end_offset:
                self._replay_producer(header)
        self._on_dirty(self)

    def truncate_to(self, offset: int) -> None:
        """Follower truncation to where our log agrees with the leader's; producer state is rebuilt."""
        before = self.log.log_end_offset
        self.log.truncate_to(offset)
        if self.log.log_end_offset < before:
            log.warning("%s: truncated from log end offset %d to %d (diverged from leader %d, epoch %d)", self,
                        before, self.log.log_end_offset, self.leader_id, self.leader_epoch)
            self._rebuild_producer_state()

    def reset_to(self, offset: int) -> None:
        """The leader's log starts beyond ours: empty the log and restart it at ``offset``."""
        log.warning("%s: leader's log start offset %d is beyond our log end offset %d: restarting the log there",
                    self, offset, self.log.log_end_offset)
        self.log.reset_to(offset)
        self._rebuild_producer_state()
        self._on_dirty(self)

    # -- waiters --------------------------------------------------------------------------------------------------
    def wait_for_high_watermark(self, offset: int) -> asyncio.Future[None]:
        """A future resolved once the write ending before ``offset`` is committed (acks=all).

        Fails with NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR fell below min.insync.replicas, and with
        NOT_LEADER_OR_FOLLOWER when this broker stops leading (the write's fate is then unknown to the client).
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ack_waiters.append((offset, future))
        self._release_ack_waiters()
        return future

    def add_watcher(self, event: asyncio.Event) -> None:
        """Sets ``event`` whenever the high watermark advances (long-polling fetches)."""
        self._hw_watchers.add(event)

    def remove_watcher(self, event: asyncio.Event) -> None:
        self._hw_watchers.discard(event)

    def add_append_watcher(self, event: asyncio.Event) -> None:
        """Sets ``event`` whenever the log end offset advances (follower fetches served by this leader)."""
        self._append_watchers.add(event)

    def remove_append_watcher(self, event: asyncio.Event) -> None:
        self._append_watchers.discard(event)

    def on_flushed(self) -> None:
        """The flusher made more of the log durable."""
        if self.is_leader:
            self.replica.on_local_flushed()
            self.on_high_watermark_maybe_changed()
        elif self.fetcher_wakeup is not None:
            self.fetcher_wakeup.set()   # the fetched data is durable: the next fetch may report it

    def on_high_watermark_maybe_changed(self) -> None:
        """Release acks and wake consumer fetches (after a flush, a follower fetch, an ISR change)."""
        self._release_ack_waiters()
        self._wake(self._hw_watchers)

    def _release_ack_waiters(self) -> None:
        state = self.leader_state
        if not self._ack_waiters or state is None:
            return
        still_waiting = []
        for offset, future in self._ack_waiters:
            if future.done():
                continue
            check = state.check_acks_all(offset)
            if not check.done:
                still_waiting.append((offset, future))
            elif check.error_code == ErrorCode.NONE:
                future.set_result(None)
            else:
                future.set_exception(KafkaError(check.error_code, f"{self}: ISR {list(state.maximal_isr)} is "
                                                f"below min.insync.replicas {state.effective_min_isr}"))
        self._ack_waiters = still_waiting

    @staticmethod
    def _wake(events: set[asyncio.Event]) -> None:
        for event in events:
            event.set()

    def fail_waiters(self, error: ErrorCode) -> None:
        """The partition went away here (deleted, shut down, leadership moved): waiting produces get ``error``."""
        for _offset, future in self._ack_waiters:
            if not future.done():
                future.set_exception(KafkaError(error, f"{self} is no longer served here"))
        self._ack_waiters = []
        self._wake(self._hw_watchers)
        self._wake(self._append_watchers)
