"""One partition replica hosted by this broker: its log, producer state, high watermark and waiters.

This is the shell around ``PartitionLog`` that the request handlers use.  On a single node the partition is
always leader; the replication issue adds followers and an ISR, and the high watermark then becomes the minimum
fsynced log end offset over the ISR.  Already now the high watermark counts only fsynced offsets: an offset is
visible to consumers, and an ``acks=all`` write is acknowledged, only once it is durable (DESIGN.md §7).

Waiters: ``acks=all`` produces wait for the high watermark to pass their last offset; long-polling fetches
wait for any advance.  Both are woken by ``on_flushed`` (called by the group-commit flusher after fsync).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

from cluster.core.errors import ErrorCode, KafkaError, invariant
from cluster.replication.producer_state import ProducerStateTable
from cluster.storage.partition_log import LogConfig, PartitionLog
from cluster.wire import records

log = logging.getLogger("cluster.broker.partition")

COMPRESSION_ZSTD = 4


class Partition:
    """A partition this broker leads (single node: all of them)."""

    def __init__(self, topic: str, partition_index: int, topic_id: uuid.UUID, partition_log: PartitionLog,
                 log_config: LogConfig, leader_epoch: int, on_dirty: Callable[[Partition], None]) -> None:
        self.topic = topic
        self.partition_index = partition_index
        self.topic_id = topic_id
        self.log = partition_log
        self.log_config = log_config
        self.leader_epoch = leader_epoch
        self.is_leader = True  # cluster mode: False for a follower replica (ReplicaManager.apply_local_changes)
        self.producer_state = ProducerStateTable()
        self._on_dirty = on_dirty
        self._ack_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._hw_watchers: set[asyncio.Event] = set()
        self.deleted = False
        self._rebuild_producer_state()

    def __repr__(self) -> str:
        return f"Partition({self.topic}-{self.partition_index})"

    @property
    def high_watermark(self) -> int:
        """Offsets below this are durable (fsynced) and visible to consumers; never above log_end_offset."""
        return self.log.recovery_point

    @property
    def log_start_offset(self) -> int:
        return self.log.log_start_offset

    @property
    def log_end_offset(self) -> int:
        return self.log.log_end_offset

    def _rebuild_producer_state(self) -> None:
        """Replays every idempotent batch header in the log so retries across a restart stay deduplicated."""
        for header in self.log.iter_batch_headers(self.log.log_start_offset):
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

    def append_records(self, batch_bytes: bytes | memoryview, now_ms: int, produce_version: int) -> tuple[int, int, int]:
        """Validates and appends one producer batch; returns (base_offset, last_offset, log_append_time_ms).

        A duplicate of a recently appended idempotent batch is not appended again: its original offsets are
        returned.  Raises KafkaError with the Kafka error code for every rejected batch; the log is untouched
        in that case.
        """
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
        duplicate = self.producer_state.check_append(header.producer_id, header.producer_epoch,
                                                     header.base_sequence, header.last_offset_delta)
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
        self.producer_state.replay(header.producer_id, header.producer_epoch, header.base_sequence,
                                   header.last_offset_delta, base_offset, header.max_timestamp)
        self._on_dirty(self)
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

    def wait_for_high_watermark(self, offset: int) -> asyncio.Future[None]:
        """A future resolved once ``high_watermark >= offset`` (acks=all)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.high_watermark >= offset:
            future.set_result(None)
        else:
            self._ack_waiters.append((offset, future))
        return future

    def add_watcher(self, event: asyncio.Event) -> None:
        """Sets ``event`` whenever the high watermark advances (long-polling fetches)."""
        self._hw_watchers.add(event)

    def remove_watcher(self, event: asyncio.Event) -> None:
        self._hw_watchers.discard(event)

    def on_flushed(self) -> None:
        """The flusher made more of the log durable: release acks and wake fetches."""
        high_watermark = self.high_watermark
        if self._ack_waiters:
            still_waiting = []
            for offset, future in self._ack_waiters:
                if future.done():
                    continue
                if high_watermark >= offset:
                    future.set_result(None)
                else:
                    still_waiting.append((offset, future))
            self._ack_waiters = still_waiting
        for event in self._hw_watchers:
            event.set()

    def fail_waiters(self, error: ErrorCode) -> None:
        """The partition went away (deleted or shut down): waiting produces get ``error``."""
        for _offset, future in self._ack_waiters:
            if not future.done():
                future.set_exception(KafkaError(error, f"{self} is no longer served here"))
        self._ack_waiters = []
        for event in self._hw_watchers:
            event.set()
