"""Idempotent-producer state of one partition: sequence checks and duplicate detection.

An idempotent producer numbers its batches per partition (``base_sequence``) and retries a batch with the same
numbers when it did not see the answer.  The partition leader keeps, for every producer id, its current
``producer_epoch`` and the metadata of its last ``MAX_RETAINED_BATCHES`` batches (Kafka keeps 5, matching the
clients' limit of 5 in-flight requests).  A retried batch that matches one of those is a duplicate: it is not
appended again, and the original offsets are returned, so the client sees exactly-once appends.

The rules follow Kafka's ``ProducerStateManager``/``ProducerAppendInfo``:
  * an older epoch is fenced (INVALID_PRODUCER_EPOCH);
  * a newer epoch must start at sequence 0, unless the producer is unknown;
  * within an epoch the next batch must start at ``last_sequence + 1`` (wrapping from INT32_MAX to 0);
    a gap or a rewind that is not a retained duplicate is OUT_OF_ORDER_SEQUENCE_NUMBER;
  * a producer with no state (new, or expired) may start at any sequence, as Kafka allows after retention.

State is rebuilt after a restart by replaying the batch headers in the log through ``replay`` (no checks),
so a retry that crosses a broker restart is still recognised.  This module is pure: no clock, no I/O.
"""

from __future__ import annotations

import dataclasses
from collections import deque

from cluster.core.errors import ErrorCode, KafkaError, invariant

MAX_RETAINED_BATCHES = 5
INT32_MAX = 2**31 - 1
NO_PRODUCER_ID = -1


@dataclasses.dataclass(frozen=True)
class BatchMetadata:
    """What we remember of an appended batch to recognise its retry."""

    first_sequence: int
    last_sequence: int
    base_offset: int
    last_offset: int
    timestamp_ms: int


@dataclasses.dataclass
class ProducerEntry:
    producer_epoch: int
    batches: deque[BatchMetadata]
    last_timestamp_ms: int

    @property
    def last_sequence(self) -> int:
        return self.batches[-1].last_sequence if self.batches else -1


def last_sequence_of(base_sequence: int, last_offset_delta: int) -> int:
    """The sequence of a batch's last record; sequences wrap from INT32_MAX to 0."""
    return (base_sequence + last_offset_delta) % (INT32_MAX + 1)


def _in_sequence(last_sequence: int, next_sequence: int) -> bool:
    return next_sequence == last_sequence + 1 or (next_sequence == 0 and last_sequence == INT32_MAX)


class ProducerStateTable:
    """Producer id -> epoch and recent batches, for one partition."""

    def __init__(self) -> None:
        self._entries: dict[int, ProducerEntry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, producer_id: int) -> ProducerEntry | None:
        return self._entries.get(producer_id)

    def check_append(
        self, producer_id: int, producer_epoch: int, base_sequence: int, last_offset_delta: int
    ) -> BatchMetadata | None:
        """Validates a batch about to be appended.

        Returns the metadata of the original batch when this one is a duplicate (the caller answers with
        its offsets and does not append), None when the batch may be appended, and raises KafkaError with
        INVALID_PRODUCER_EPOCH or OUT_OF_ORDER_SEQUENCE_NUMBER otherwise.
        """
        if producer_id == NO_PRODUCER_ID:
            return None
        entry = self._entries.get(producer_id)
        if entry is None:
            return None
        if producer_epoch < entry.producer_epoch:
            raise KafkaError(
                ErrorCode.INVALID_PRODUCER_EPOCH,
                f"producer {producer_id} epoch {producer_epoch} is older than {entry.producer_epoch}",
            )
        last_sequence = last_sequence_of(base_sequence, last_offset_delta)
        if producer_epoch > entry.producer_epoch:
            if base_sequence != 0:
                raise KafkaError(
                    ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
                    f"producer {producer_id} new epoch {producer_epoch} must start at sequence 0, "
                    f"got {base_sequence}",
                )
            return None
        for batch in entry.batches:
            if batch.first_sequence == base_sequence and batch.last_sequence == last_sequence:
                return batch
        if entry.batches and not _in_sequence(entry.last_sequence, base_sequence):
            raise KafkaError(
                ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
                f"producer {producer_id} epoch {producer_epoch}: expected sequence "
                f"{(entry.last_sequence + 1) % (INT32_MAX + 1)}, got {base_sequence}",
            )
        return None

    def replay(
        self,
        producer_id: int,
        producer_epoch: int,
        base_sequence: int,
        last_offset_delta: int,
        base_offset: int,
        timestamp_ms: int,
    ) -> None:
        """Records an appended batch (after check_append, or when rebuilding state from the log)."""
        if producer_id == NO_PRODUCER_ID:
            return
        metadata = BatchMetadata(
            first_sequence=base_sequence,
            last_sequence=last_sequence_of(base_sequence, last_offset_delta),
            base_offset=base_offset,
            last_offset=base_offset + last_offset_delta,
            timestamp_ms=timestamp_ms,
        )
        entry = self._entries.get(producer_id)
        if entry is None or producer_epoch > entry.producer_epoch:
            entry = ProducerEntry(producer_epoch, deque(maxlen=MAX_RETAINED_BATCHES), timestamp_ms)
            self._entries[producer_id] = entry
        elif producer_epoch < entry.producer_epoch:
            # Only possible while replaying a log written before a fence: the newer epoch wins.
            return
        entry.batches.append(metadata)
        entry.last_timestamp_ms = max(entry.last_timestamp_ms, timestamp_ms)
        invariant(len(entry.batches) <= MAX_RETAINED_BATCHES, "retained batches are bounded")

    def expire(self, now_ms: int, expiration_ms: int) -> int:
        """Forgets producers idle for longer than ``producer.id.expiration.ms``; returns how many."""
        expired = [pid for pid, entry in self._entries.items() if now_ms - entry.last_timestamp_ms > expiration_ms]
        for producer_id in expired:
            del self._entries[producer_id]
        return len(expired)

    def truncate(self) -> None:
        """Drops all state (the log was truncated; the caller replays what remains)."""
        self._entries.clear()
