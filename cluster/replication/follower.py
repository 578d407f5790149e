"""The follower's side of partition replication: what to fetch, and what to do with the answer.

A follower pulls from its leader.  Each fetch names ``fetch_offset`` = its log end offset, which must also be
its *fsynced* log end offset: the leader counts that offset toward the high watermark (../shared/DESIGN.md,
fixed decision 7), so the follower flushes what it appended before it fetches again (as KRaft voters do).  It also names
``last_fetched_epoch``, the epoch of its last batch; the leader answers ``diverging_epoch`` when that history
differs from its own, and the follower truncates to where they agree (KIP-101, KIP-279, KIP-320; Fetch-based
truncation, replication.md §2.6).  It never truncates by its local high watermark, and truncating *below* it is
fatal: that would drop committed data, the very failure KIP-101 fixed.

The state machine does not touch the log: it reads it through ``ReplicaLogView`` and returns a ``FetchOutcome``
telling the shell to append, truncate, back off or wait for metadata.  Pure: no clock, no I/O.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Protocol

from cluster.core.errors import ErrorCode, InvariantViolation, invariant
from cluster.replication.leader import UNDEFINED_EPOCH, UNKNOWN_OFFSET, EpochEndOffset

__all__ = [
    "FetchAction",
    "FetchOutcome",
    "FetchPosition",
    "FollowerFetchState",
    "FollowerStatus",
    "ReplicaLogView",
    "TruncationBelowHighWatermarkError",
    "truncation_offset",
]


class ReplicaLogView(Protocol):
    """The read-only facts the follower needs from its local log (PartitionLog + its epoch cache)."""

    @property
    def log_start_offset(self) -> int: ...

    @property
    def log_end_offset(self) -> int: ...

    @property
    def durable_log_end_offset(self) -> int:
        """Everything below is fsynced (PartitionLog's recovery point)."""
        ...

    @property
    def latest_epoch(self) -> int:
        """The epoch of the last batch in the log, -1 for an empty epoch cache."""
        ...

    def end_offset_for_epoch(self, leader_epoch: int) -> tuple[int, int]:
        """(largest epoch <= leader_epoch, its end offset), Kafka's semantics; (-1, -1) if unknown."""
        ...


class TruncationBelowHighWatermarkError(InvariantViolation):
    """Fatal: the leader's history would make us drop offsets we know to be committed (KIP-101)."""


class FollowerStatus(enum.Enum):
    FETCHING = "fetching"
    BACKING_OFF = "backing_off"              # retry after ``backoff_until_ms``
    AWAITING_METADATA = "awaiting_metadata"  # fenced: only a newer leader epoch from metadata resumes us


class FetchAction(enum.Enum):
    APPEND = "append"        # append the response's records (maybe none), then call on_records_appended
    TRUNCATE = "truncate"    # truncate the log to ``offset``, then fetch again (it may diverge again)
    RESET = "reset"          # the leader deleted our range: empty the log and start it at ``offset``
    BACKOFF = "backoff"      # retry after ``backoff_until_ms``
    AWAIT_METADATA = "await_metadata"
    IGNORE = "ignore"        # an answer to a request we no longer wait for


@dataclasses.dataclass(frozen=True, eq=False)
class FetchPosition:
    """One replica fetch request for this partition.  Compared by identity to match its response."""

    leader_id: int
    current_leader_epoch: int
    fetch_offset: int
    last_fetched_epoch: int
    log_start_offset: int
    # What the follower holds fsynced; below fetch_offset only for a fetch sent before the last append's fsync
    # finished (``allow_unflushed``).  The leader counts only this toward the high watermark.
    durable_log_end_offset: int = UNKNOWN_OFFSET


@dataclasses.dataclass(frozen=True)
class FetchOutcome:
    action: FetchAction
    offset: int = UNKNOWN_OFFSET
    error_code: ErrorCode = ErrorCode.NONE


def truncation_offset(diverging: EpochEndOffset, log: ReplicaLogView) -> int:
    """Where to truncate given the leader's diverging epoch (Kafka's ``getOffsetTruncationState``).

    If we know the leader's epoch, our logs agree up to the smaller of the two end offsets of that epoch.  If
    we do not (KIP-279: we saw epochs the leader never did), we truncate to the end of our largest smaller
    epoch; the next fetch then carries an older last fetched epoch and the leader may send us further back.
    """
    local_epoch, local_end = log.end_offset_for_epoch(diverging.leader_epoch)
    if local_epoch == UNDEFINED_EPOCH or local_end == UNKNOWN_OFFSET:
        return min(diverging.end_offset, log.log_end_offset)
    if local_epoch != diverging.leader_epoch:
        return min(local_end, log.log_end_offset)
    return min(local_end, diverging.end_offset, log.log_end_offset)


class FollowerFetchState:
    """Fetch state of one partition replica while it follows ``leader_id`` in ``leader_epoch``."""

    def __init__(self, topic_id: object, partition: int, local_broker_id: int, leader_id: int, leader_epoch: int,
                 *, high_watermark: int = 0, fetch_backoff_ms: int = 1000) -> None:
        invariant(leader_id != local_broker_id, "a follower does not fetch from itself")
        self.topic_id = topic_id
        self.partition = partition
        self.local_broker_id = local_broker_id
        self.leader_id = leader_id
        self.leader_epoch = leader_epoch
        self.high_watermark = high_watermark
        self.fetch_backoff_ms = fetch_backoff_ms
        self.status = FollowerStatus.FETCHING
        self.backoff_until_ms = 0
        self.in_flight: FetchPosition | None = None
        # The leader held more than its last answer carried: fetch the rest before the append is fsynced.
        self.fetch_ahead = False
        self._appending_leader_high_watermark: int | None = None

    # -- requests -------------------------------------------------------------------------------------------
    def next_fetch(self, now_ms: int, log: ReplicaLogView, *,
                   allow_unflushed: bool | None = None) -> FetchPosition | None:
        """The next fetch to send, or None: one in flight, backing off, fenced, or the log not yet fsynced.

        ``allow_unflushed`` (default: ``fetch_ahead``, i.e. while the leader has a backlog for us) sends the
        fetch before the last append is fsynced, so the transfer of the next data overlaps the fsync; the
        request then says what is durable (``durable_log_end_offset``) apart from where to read from
        (``fetch_offset``).  A caught-up follower waits for the fsync instead: that fetch reports it, so the
        leader's high watermark (and acks=all) advance one round trip sooner than after an empty fetch-ahead.
        """
        if allow_unflushed is None:
            allow_unflushed = self.fetch_ahead
        if self.status is FollowerStatus.AWAITING_METADATA or self.in_flight is not None:
            return None
        if self._appending_leader_high_watermark is not None:
            return None  # the shell has not finished the last append
        if self.status is FollowerStatus.BACKING_OFF:
            if now_ms < self.backoff_until_ms:
                return None
            self.status = FollowerStatus.FETCHING
        if log.durable_log_end_offset < log.log_end_offset and not allow_unflushed:
            return None  # the leader learns what we hold durably from this fetch: flush first
        self.in_flight = FetchPosition(self.leader_id, self.leader_epoch, log.log_end_offset, log.latest_epoch,
                                       log.log_start_offset, min(log.durable_log_end_offset, log.log_end_offset))
        return self.in_flight

    # -- responses ------------------------------------------------------------------------------------------
    def on_fetch_response(self, request: FetchPosition, now_ms: int, log: ReplicaLogView, *,
                          error_code: ErrorCode = ErrorCode.NONE, high_watermark: int = UNKNOWN_OFFSET,
                          log_start_offset: int = UNKNOWN_OFFSET,
                          diverging_epoch: EpochEndOffset | None = None) -> FetchOutcome:
        """Classifies the leader's answer to ``request``.  Raises TruncationBelowHighWatermarkError (fatal)."""
        if request is not self.in_flight:
            return FetchOutcome(FetchAction.IGNORE)
        self.in_flight = None
        if error_code != ErrorCode.NONE:
            return self._on_error(request, error_code, now_ms, log_start_offset)
        if log.log_end_offset != request.fetch_offset:
            return FetchOutcome(FetchAction.IGNORE)  # the log moved under the request: refetch from the new end
        if diverging_epoch is not None:
            target = truncation_offset(diverging_epoch, log)
            if target < self.high_watermark:
                raise TruncationBelowHighWatermarkError(
                    f"partition {self.partition}: leader {self.leader_id} epoch {self.leader_epoch} diverges at "
                    f"{diverging_epoch}; truncating to {target} would drop committed offsets below high "
                    f"watermark {self.high_watermark}")
            return FetchOutcome(FetchAction.TRUNCATE, target)
        self._appending_leader_high_watermark = high_watermark
        return FetchOutcome(FetchAction.APPEND)

    def on_records_appended(self, log: ReplicaLogView, leader_log_end_offset: int = UNKNOWN_OFFSET) -> int:
        """The shell appended the records of an APPEND outcome; returns the new local high watermark.

        ``leader_log_end_offset`` (from the answer) decides ``fetch_ahead``: the leader holds more than we do.

        Follower HW = min(leader HW, local log end offset), kept monotonic: it is the floor below which we
        must never truncate, and a new leader's older HW does not un-commit anything.
        """
        leader_high_watermark = self._appending_leader_high_watermark
        invariant(leader_high_watermark is not None, "no append outstanding")
        self._appending_leader_high_watermark = None
        self.fetch_ahead = leader_log_end_offset > log.log_end_offset
        self._raise_high_watermark(min(leader_high_watermark, log.log_end_offset))
        return self.high_watermark

    def on_fetch_failed(self, request: FetchPosition, now_ms: int) -> None:
        """The request timed out or the connection broke: retry after the backoff."""
        if request is self.in_flight:
            self.in_flight = None
            self._back_off(now_ms)

    def on_leader_change(self, leader_id: int, leader_epoch: int, now_ms: int) -> bool:
        """Committed metadata names a leader for a newer epoch.  Returns False for a stale or same epoch.

        Any epoch bump restarts fetching even if the leader did not change (KAFKA-7164): the next fetch carries
        our last fetched epoch and the new leader checks it, so truncation is re-run.
        """
        if leader_epoch <= self.leader_epoch:
            return False
        invariant(leader_id != self.local_broker_id, "becoming leader needs a PartitionLeaderState")
        self.leader_id, self.leader_epoch = leader_id, leader_epoch
        self.status = FollowerStatus.FETCHING
        self.in_flight = None
        self.fetch_ahead = False
        self._appending_leader_high_watermark = None
        return True

    # -- internals ------------------------------------------------------------------------------------------
    def _on_error(self, request: FetchPosition, error_code: ErrorCode, now_ms: int,
                  leader_log_start_offset: int) -> FetchOutcome:
        if error_code == ErrorCode.FENCED_LEADER_EPOCH:
            # Our leader epoch is older than the leader's: metadata will tell us who leads now.
            self.status = FollowerStatus.AWAITING_METADATA
            return FetchOutcome(FetchAction.AWAIT_METADATA, error_code=error_code)
        if (error_code == ErrorCode.OFFSET_OUT_OF_RANGE and leader_log_start_offset != UNKNOWN_OFFSET
                and leader_log_start_offset > request.fetch_offset):
            # Retention on the leader deleted what we would fetch next; nothing we hold is beyond it.
            self._raise_high_watermark(leader_log_start_offset)
            return FetchOutcome(FetchAction.RESET, leader_log_start_offset, error_code)
        # UNKNOWN_LEADER_EPOCH (the leader has not seen its new epoch yet), NOT_LEADER_OR_FOLLOWER (it lost
        # leadership; metadata will follow), transient errors: try again later.
        self._back_off(now_ms)
        return FetchOutcome(FetchAction.BACKOFF, self.backoff_until_ms, error_code)

    def _back_off(self, now_ms: int) -> None:
        self.status = FollowerStatus.BACKING_OFF
        self.backoff_until_ms = now_ms + self.fetch_backoff_ms

    def _raise_high_watermark(self, high_watermark: int) -> None:
        if high_watermark > self.high_watermark:
            self.high_watermark = high_watermark
