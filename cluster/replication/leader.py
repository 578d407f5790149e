"""The partition leader's replication state: follower progress, ISR changes and the high watermark.

A write is committed once every in-sync replica holds it *durably*; the high watermark is the first offset that
is not committed yet, and consumers read only below it.  This module decides, from follower fetches, local
flushes and the clock, where the high watermark is, which followers fell out of sync, which may rejoin, and when
an ``acks=all`` produce may be answered.  It follows Kafka's ``Partition``/``Replica`` (replication.md §2.1-2.4,
§2.7) with one deliberate change (../shared/DESIGN.md, fixed decision 7): only fsynced offsets count, i.e. the
leader's own log end offset enters the high watermark only through ``on_local_flushed``, and a follower's fetch offset is its
fsynced log end offset (followers flush before they fetch again, see ``follower.py``).

The rules that stop the failures Kafka shipped (replication.md §5):
  * high watermark = min over the *maximal* ISR (committed ISR plus a pending expansion) and caught-up eligible
    replicas, never decreasing, and frozen while the committed ISR is below min.insync.replicas (KIP-966);
  * a follower rejoins only when its log end offset >= max(high watermark, leader epoch start offset);
  * ISR changes are proposals to the controller (AlterPartition, KIP-497) carrying leader, partition and broker
    epochs (KIP-903), one in flight at a time; a shrink is assumed only once committed;
  * a fetch carrying a stale broker epoch, or a diverging last fetched epoch, does not move follower progress.

Pure and deterministic: no clock, no I/O; ``now_ms`` comes in with every event that needs time.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Sequence

from cluster.core.errors import ErrorCode, KafkaError, OffsetOutOfRangeError, invariant

__all__ = [
    "UNKNOWN_OFFSET",
    "UNDEFINED_EPOCH",
    "AcksCheck",
    "AlterPartitionOutcome",
    "EpochEndOffset",
    "FollowerFetchResult",
    "IsrChangeKind",
    "PartitionLeaderState",
    "PendingIsrChange",
    "ReplicaFetchState",
    "check_current_leader_epoch",
    "find_diverging_epoch",
]

UNKNOWN_OFFSET = -1
UNDEFINED_EPOCH = -1
NO_BROKER_EPOCH = -1
# "Never": Kafka uses 0 and relies on wall-clock time being large; a simulator's clock may start at 0.
NEVER_MS = -(2**62)


@dataclasses.dataclass(frozen=True)
class EpochEndOffset:
    """(leader epoch, end offset): a FetchResponse ``divergingEpoch`` or an OffsetsForLeaderEpoch answer."""

    leader_epoch: int
    end_offset: int


def check_current_leader_epoch(current_leader_epoch: int, local_leader_epoch: int) -> None:
    """KIP-320: a request naming an older epoch is fenced, a newer one is unknown to us yet; -1 skips the check."""
    if current_leader_epoch == UNDEFINED_EPOCH:
        return
    if current_leader_epoch < local_leader_epoch:
        raise KafkaError(ErrorCode.FENCED_LEADER_EPOCH,
                         f"request epoch {current_leader_epoch} is older than leader epoch {local_leader_epoch}")
    if current_leader_epoch > local_leader_epoch:
        raise KafkaError(ErrorCode.UNKNOWN_LEADER_EPOCH,
                         f"request epoch {current_leader_epoch} is newer than leader epoch {local_leader_epoch}")


def find_diverging_epoch(last_fetched_epoch: int, fetch_offset: int,
                         leader_epoch_end_offset: tuple[int, int]) -> EpochEndOffset | None:
    """Kafka's ``Partition.readRecords`` check: does the follower's log diverge from ours at ``fetch_offset``?

    ``leader_epoch_end_offset`` is the leader's ``end_offset_for_epoch(last_fetched_epoch)``: the largest epoch
    <= the requested one and its end offset.  The follower diverges if we never wrote its epoch (we answer a
    smaller one) or our copy of that epoch ends before its fetch offset; it then truncates (see follower.py).
    An undefined answer means we cannot place the follower at all: OFFSET_OUT_OF_RANGE, as Kafka does.
    """
    epoch, end_offset = leader_epoch_end_offset
    if epoch == UNDEFINED_EPOCH or end_offset == UNKNOWN_OFFSET:
        raise OffsetOutOfRangeError(
            f"could not determine the end offset of last fetched epoch {last_fetched_epoch}")
    if epoch < last_fetched_epoch or end_offset < fetch_offset:
        return EpochEndOffset(epoch, end_offset)
    return None


@dataclasses.dataclass
class ReplicaFetchState:
    """What the leader knows about one follower (Kafka's ``ReplicaState``).

    ``log_end_offset`` is the follower's last fetch offset, i.e. its fsynced log end offset.
    """

    replica_id: int
    log_end_offset: int = UNKNOWN_OFFSET
    log_start_offset: int = UNKNOWN_OFFSET
    last_fetch_time_ms: int = NEVER_MS
    last_fetch_leader_log_end_offset: int = UNKNOWN_OFFSET
    last_caught_up_time_ms: int = NEVER_MS
    broker_epoch: int = NO_BROKER_EPOCH
    # Not fenced, not in controlled shutdown, broker epoch current (Kafka's isReplicaIsrEligible).
    isr_eligible: bool = True

    def update_fetch_state(self, fetch_offset: int, log_start_offset: int, now_ms: int,
                           leader_log_end_offset: int, broker_epoch: int) -> None:
        """Kafka's ``Replica.updateFetchStateOrThrow`` rule for ``lastCaughtUpTimeMs``.

        Caught up *now* if the fetch reaches the leader's current log end offset; otherwise caught up *as of the
        previous fetch* if it reaches the leader log end offset seen at that previous fetch.  The second clause
        lets a follower stay in sync under a steady stream of small produces, where its fetch offset is always a
        little behind the leader's moving log end.
        """
        if fetch_offset >= leader_log_end_offset:
            self.last_caught_up_time_ms = max(self.last_caught_up_time_ms, now_ms)
        elif fetch_offset >= self.last_fetch_leader_log_end_offset:
            self.last_caught_up_time_ms = max(self.last_caught_up_time_ms, self.last_fetch_time_ms)
        self.log_end_offset = fetch_offset
        self.log_start_offset = log_start_offset
        self.last_fetch_leader_log_end_offset = max(leader_log_end_offset, self.last_fetch_leader_log_end_offset)
        self.last_fetch_time_ms = now_ms
        self.broker_epoch = broker_epoch

    def is_caught_up(self, leader_log_end_offset: int, now_ms: int, replica_lag_time_max_ms: int) -> bool:
        """Kafka's ``ReplicaState.isCaughtUp``: at the leader's end, or caught up within the lag time."""
        return (leader_log_end_offset == self.log_end_offset
                or now_ms - self.last_caught_up_time_ms <= replica_lag_time_max_ms)


class IsrChangeKind(enum.Enum):
    EXPAND = "expand"
    SHRINK = "shrink"


@dataclasses.dataclass(frozen=True, eq=False)
class PendingIsrChange:
    """One AlterPartition proposal in flight.  Compared by identity: a response answers exactly this object."""

    kind: IsrChangeKind
    leader_epoch: int
    partition_epoch: int
    new_isr: tuple[int, ...]
    # (broker id, broker epoch from its last fetch, -1 if unknown): AlterPartition v3 ``newIsrWithEpochs``.
    new_isr_with_epochs: tuple[tuple[int, int], ...]
    last_committed_isr: tuple[int, ...]

    @property
    def maximal_isr(self) -> tuple[int, ...]:
        """Committed ISR plus any replica being added: the stricter set until the controller answers."""
        return self.last_committed_isr + tuple(b for b in self.new_isr if b not in self.last_committed_isr)


class AlterPartitionOutcome(enum.Enum):
    APPLIED = "applied"                # committed ISR and partition epoch adopted
    STALE_IGNORED = "stale_ignored"    # answers a request that is no longer the pending one
    REVERTED = "reverted"              # controller refused it: back to the last committed ISR, may propose again
    AWAIT_METADATA = "await_metadata"  # our view is stale: stay pending until on_partition_metadata
    RETRY = "retry"                    # outcome unknown (controller moved, transient): resend the same request


# The controller says our state is behind: only newer partition metadata can unblock us (Kafka keeps the
# partition pending until LeaderAndIsr/metadata arrives).
_AWAIT_METADATA_ERRORS = frozenset({
    ErrorCode.FENCED_LEADER_EPOCH, ErrorCode.INVALID_UPDATE_VERSION,
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.UNKNOWN_TOPIC_ID, ErrorCode.INVALID_REQUEST,
})
# The controller looked at the proposal and refused it; it is safe to fall back to what was committed.
_REVERT_ERRORS = frozenset({ErrorCode.OPERATION_NOT_ATTEMPTED, ErrorCode.INELIGIBLE_REPLICA})


@dataclasses.dataclass(frozen=True)
class FollowerFetchResult:
    """What a follower fetch changed: answer with ``diverging_epoch`` (and no records) when it is set."""

    diverging_epoch: EpochEndOffset | None
    high_watermark: int
    high_watermark_advanced: bool


@dataclasses.dataclass(frozen=True)
class AcksCheck:
    """``done`` False: keep the produce parked; True: answer with ``error_code``."""

    done: bool
    error_code: ErrorCode = ErrorCode.NONE


class PartitionLeaderState:
    """Replication state of one partition on its leader, for one leader epoch.

    A new leader epoch (even with the same leader) means a new instance, built after the leader recorded
    ``(leader_epoch, leader_epoch_start_offset)`` in its epoch cache (KAFKA-7415).  ``high_watermark`` is the
    value the replica knew as a follower (or from its checkpoint, clamped to its log end offset).
    """

    def __init__(self, topic_id: object, partition: int, local_broker_id: int, leader_epoch: int,
                 partition_epoch: int, replicas: Sequence[int], isr: Sequence[int], leader_epoch_start_offset: int,
                 replica_lag_time_max_ms: int, min_insync_replicas: int, *, now_ms: int = 0,
                 high_watermark: int = 0, durable_log_end_offset: int | None = None,
                 strict_min_isr: bool = True) -> None:
        invariant(local_broker_id in replicas and local_broker_id in isr, "the leader must be an ISR replica")
        invariant(0 <= high_watermark <= leader_epoch_start_offset,
                  f"high watermark {high_watermark} beyond the log end {leader_epoch_start_offset}")
        self.topic_id = topic_id
        self.partition = partition
        self.local_broker_id = local_broker_id
        self.leader_epoch = leader_epoch
        self.partition_epoch = partition_epoch
        self.replicas: tuple[int, ...] = tuple(replicas)
        self.isr: tuple[int, ...] = tuple(isr)
        self.leader_epoch_start_offset = leader_epoch_start_offset
        self.replica_lag_time_max_ms = replica_lag_time_max_ms
        self.min_insync_replicas = min_insync_replicas
        # KIP-966 "strict min ISR": no commit while the ISR is too small, so a lone replica never holds data
        # the others would have to count as committed.  Off = Kafka before ELR (commit on the leader alone).
        self.strict_min_isr = strict_min_isr
        self.high_watermark = high_watermark
        self.log_end_offset = leader_epoch_start_offset
        # Unknown durability counts as nothing durable beyond what is already committed.
        self.durable_log_end_offset = high_watermark if durable_log_end_offset is None else durable_log_end_offset
        self.pending_isr_change: PendingIsrChange | None = None
        self.now_ms = now_ms
        self._followers: dict[int, ReplicaFetchState] = {}
        self._reset_followers(now_ms)
        # A lone ISR (or a restarted leader whose whole log is durable) commits at once, not on the next write:
        # a retried duplicate appends nothing and must still be answered.
        self._maybe_increment_high_watermark()

    # -- views ----------------------------------------------------------------------------------------------
    @property
    def maximal_isr(self) -> tuple[int, ...]:
        pending = self.pending_isr_change
        return self.isr if pending is None else pending.maximal_isr

    @property
    def effective_min_isr(self) -> int:
        return min(self.min_insync_replicas, len(self.replicas))

    @property
    def is_under_min_isr(self) -> bool:
        """The committed ISR is smaller than min(min.insync.replicas, replication factor) (Kafka's rule)."""
        return len(self.isr) < self.effective_min_isr

    @property
    def high_watermark_behind_epoch_start(self) -> bool:
        """Right after election the HW may still be below this epoch's start: ListOffsets LATEST must answer
        OFFSET_NOT_AVAILABLE then, not a value that could go backwards (replication.md §2.8)."""
        return self.high_watermark < self.leader_epoch_start_offset

    def follower(self, replica_id: int) -> ReplicaFetchState:
        state = self._followers.get(replica_id)
        if state is None:
            raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER,
                             f"broker {replica_id} is not a follower of partition {self.partition}")
        return state

    def followers(self) -> Iterable[ReplicaFetchState]:
        return self._followers.values()

    # -- events ---------------------------------------------------------------------------------------------
    def on_local_append(self, log_end_offset: int, now_ms: int | None = None) -> bool:
        """The leader appended; its (not yet durable) log end offset moved.  Returns True if the HW advanced."""
        self._tick(now_ms)
        invariant(log_end_offset >= self.log_end_offset, "the leader's log never shrinks while it leads")
        self.log_end_offset = log_end_offset
        return self._maybe_increment_high_watermark()

    def on_local_flushed(self, durable_log_end_offset: int, now_ms: int | None = None) -> bool:
        """An fsync covered the leader's log up to ``durable_log_end_offset``.  Returns True if the HW advanced."""
        self._tick(now_ms)
        if durable_log_end_offset <= self.durable_log_end_offset:
            return False  # flushes may complete out of order; durability only grows
        self.durable_log_end_offset = durable_log_end_offset
        self.log_end_offset = max(self.log_end_offset, durable_log_end_offset)
        return self._maybe_increment_high_watermark()

    def on_follower_fetch(self, replica_id: int, fetch_offset: int, now_ms: int, leader_log_end_offset: int, *,
                          last_fetched_epoch: int = UNDEFINED_EPOCH,
                          leader_epoch_end_offset: tuple[int, int] | None = None,
                          current_leader_epoch: int = UNDEFINED_EPOCH, log_start_offset: int = UNKNOWN_OFFSET,
                          broker_epoch: int = NO_BROKER_EPOCH,
                          registered_broker_epoch: int = NO_BROKER_EPOCH,
                          durable_log_end_offset: int | None = None) -> FollowerFetchResult:
        """A follower fetched from ``fetch_offset`` (its log end offset), holding ``durable_log_end_offset``
        fsynced (None: all of it, the usual case).  Only the durable part counts as the follower's progress:
        toward the high watermark, the ISR and catching up.

        ``leader_log_end_offset`` is our log end when the fetch is served.  With ``last_fetched_epoch`` >= 0 the
        caller passes ``leader_epoch_end_offset`` = our ``end_offset_for_epoch(last_fetched_epoch)``; a diverging
        follower gets ``diverging_epoch`` back and its progress is *not* recorded (its offset is not on our log).
        Raises KafkaError: FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH (KIP-320), NOT_LEADER_OR_FOLLOWER for an
        unknown replica or a broker epoch older than the registered one (KIP-903), OFFSET_OUT_OF_RANGE.
        """
        self._tick(now_ms)
        check_current_leader_epoch(current_leader_epoch, self.leader_epoch)
        replica = self.follower(replica_id)
        if broker_epoch != NO_BROKER_EPOCH and registered_broker_epoch > broker_epoch:
            raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER,
                             f"stale fetch from broker {replica_id}: broker epoch {broker_epoch} < "
                             f"registered {registered_broker_epoch}")
        if leader_log_end_offset > self.log_end_offset:
            self.log_end_offset = leader_log_end_offset
        if last_fetched_epoch != UNDEFINED_EPOCH:
            invariant(leader_epoch_end_offset is not None, "a last fetched epoch needs the leader's epoch lookup")
            diverging = find_diverging_epoch(last_fetched_epoch, fetch_offset, leader_epoch_end_offset)
            if diverging is not None:
                return FollowerFetchResult(diverging, self.high_watermark, False)
        durable = fetch_offset if durable_log_end_offset is None else min(durable_log_end_offset, fetch_offset)
        replica.update_fetch_state(durable, log_start_offset, now_ms, self.log_end_offset, broker_epoch)
        advanced = self._maybe_increment_high_watermark()
        return FollowerFetchResult(None, self.high_watermark, advanced)

    def set_replica_isr_eligible(self, replica_id: int, eligible: bool) -> bool:
        """Metadata says the broker is (not) fenced / shutting down.  Returns True if the HW advanced."""
        self.follower(replica_id).isr_eligible = eligible
        return self._maybe_increment_high_watermark()

    # -- ISR changes ----------------------------------------------------------------------------------------
    def out_of_sync_replicas(self, now_ms: int) -> tuple[int, ...]:
        """ISR followers that lag: not at our log end and not caught up for replica.lag.time.max.ms."""
        return tuple(
            b for b in self.isr
            if b != self.local_broker_id
            and not self._followers[b].is_caught_up(self.log_end_offset, now_ms, self.replica_lag_time_max_ms))

    def maybe_shrink_isr(self, now_ms: int) -> PendingIsrChange | None:
        """Proposes removing lagging followers (Kafka's isr-expiration task).  None if nothing to do or a change
        is already in flight.  The committed ISR stays in force until the controller answers."""
        self._tick(now_ms)
        if self.pending_isr_change is not None:
            return None
        lagging = self.out_of_sync_replicas(now_ms)
        if not lagging:
            return None
        return self._propose(IsrChangeKind.SHRINK, tuple(b for b in self.isr if b not in lagging))

    def is_follower_in_sync(self, replica_id: int) -> bool:
        """Kafka's ``isFollowerInSync``: log end >= HW and >= this leader epoch's start offset.  Joining only at
        the HW is not enough: the follower could be elected without committed data between HW and our end."""
        end = self.follower(replica_id).log_end_offset
        return end >= self.high_watermark and end >= self.leader_epoch_start_offset

    def maybe_expand_isr(self, replica_id: int) -> PendingIsrChange | None:
        """Proposes adding a caught-up, eligible follower.  None if not eligible or a change is in flight."""
        if self.pending_isr_change is not None or replica_id in self.isr or replica_id not in self._followers:
            return None
        if not self._followers[replica_id].isr_eligible or not self.is_follower_in_sync(replica_id):
            return None
        return self._propose(IsrChangeKind.EXPAND, self.isr + (replica_id,))

    def on_alter_partition_response(self, request: PendingIsrChange, error_code: ErrorCode, *,
                                    leader_epoch: int = UNDEFINED_EPOCH, partition_epoch: int = -1,
                                    isr: Sequence[int] = ()) -> AlterPartitionOutcome:
        """The controller answered ``request`` (Kafka's ``handleAlterPartitionUpdate/Error``)."""
        if request is not self.pending_isr_change:
            return AlterPartitionOutcome.STALE_IGNORED
        if error_code == ErrorCode.NONE:
            if leader_epoch != self.leader_epoch or partition_epoch < self.partition_epoch:
                return AlterPartitionOutcome.AWAIT_METADATA
            self._adopt(partition_epoch, self.replicas, isr)
            return AlterPartitionOutcome.APPLIED
        if error_code in _REVERT_ERRORS:
            self.pending_isr_change = None
            self._maybe_increment_high_watermark()
            return AlterPartitionOutcome.REVERTED
        if error_code in _AWAIT_METADATA_ERRORS:
            return AlterPartitionOutcome.AWAIT_METADATA
        return AlterPartitionOutcome.RETRY

    def on_partition_metadata(self, leader_epoch: int, partition_epoch: int, replicas: Sequence[int],
                              isr: Sequence[int], now_ms: int) -> bool:
        """Committed partition state from the metadata log, same leader epoch.  Returns True if adopted.

        Only a strictly newer partition epoch is adopted (and ends a pending change): with an equal epoch the
        controller may still commit our pending request, so dropping it here could let the HW pass a replica
        that is about to join the ISR.  A newer leader epoch needs a new ``PartitionLeaderState``.
        """
        self._tick(now_ms)
        if leader_epoch < self.leader_epoch or partition_epoch <= self.partition_epoch:
            return False
        invariant(leader_epoch == self.leader_epoch, "a new leader epoch needs a new PartitionLeaderState")
        for b in replicas:
            if b != self.local_broker_id and b not in self._followers:
                self._followers[b] = ReplicaFetchState(b)  # a reassignment target starts out of sync
        for b in [b for b in self._followers if b not in replicas]:
            del self._followers[b]
        self._adopt(partition_epoch, replicas, isr)
        return True

    # -- acks=all -------------------------------------------------------------------------------------------
    def check_append_allowed(self, required_acks: int) -> None:
        """Before appending an acks=all batch: NOT_ENOUGH_REPLICAS if the committed ISR is under min ISR."""
        if required_acks == -1 and self.is_under_min_isr:
            raise KafkaError(ErrorCode.NOT_ENOUGH_REPLICAS,
                             f"ISR {list(self.isr)} is smaller than min.insync.replicas={self.effective_min_isr}")

    def check_acks_all(self, required_offset: int) -> AcksCheck:
        """May an acks=all produce whose last offset is ``required_offset - 1`` be answered?

        Done with NONE once the HW covers it and the maximal ISR is big enough (Kafka's
        ``checkEnoughReplicasReachOffset``); done with NOT_ENOUGH_REPLICAS_AFTER_APPEND when the maximal ISR is
        below min ISR, whether or not the HW got there: with strict min ISR the HW cannot move any more, so
        waiting for the timeout would only hide the reason.  The data stays in the log either way.
        """
        if len(self.maximal_isr) < self.effective_min_isr:
            return AcksCheck(True, ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND)
        if self.high_watermark >= required_offset:
            return AcksCheck(True, ErrorCode.NONE)
        return AcksCheck(False)

    # -- invariants -----------------------------------------------------------------------------------------
    def check_invariants(self) -> None:
        invariant(len(set(self.replicas)) == len(self.replicas), f"duplicate replicas {self.replicas}")
        invariant(len(set(self.isr)) == len(self.isr), f"duplicate ISR members {self.isr}")
        invariant(self.local_broker_id in self.isr, f"leader {self.local_broker_id} not in ISR {self.isr}")
        invariant(set(self.isr) <= set(self.replicas), f"ISR {self.isr} not within replicas {self.replicas}")
        invariant(set(self._followers) == set(self.replicas) - {self.local_broker_id}, "follower table mismatch")
        pending = self.pending_isr_change
        if pending is not None:
            invariant(pending.last_committed_isr == self.isr, "pending change not based on the committed ISR")
            invariant(self.local_broker_id in pending.new_isr, "proposed ISR drops the leader")
            invariant(set(pending.new_isr) <= set(self.replicas), "proposed ISR outside the replicas")
        invariant(0 <= self.high_watermark <= self.log_end_offset,
                  f"high watermark {self.high_watermark} outside [0, {self.log_end_offset}]")
        invariant(self.durable_log_end_offset <= self.log_end_offset, "durable end beyond the log end")

    # -- internals ------------------------------------------------------------------------------------------
    def _tick(self, now_ms: int | None) -> None:
        if now_ms is not None and now_ms > self.now_ms:
            self.now_ms = now_ms

    def _reset_followers(self, now_ms: int) -> None:
        """Kafka's ``resetReplicaState`` for a new leader: progress unknown; ISR members count as caught up now
        (so they are not dropped before their first fetch), others not at all."""
        self._followers = {
            b: ReplicaFetchState(b, last_caught_up_time_ms=now_ms if b in self.isr else NEVER_MS)
            for b in self.replicas if b != self.local_broker_id
        }

    def _propose(self, kind: IsrChangeKind, new_isr: tuple[int, ...]) -> PendingIsrChange:
        with_epochs = tuple(
            (b, NO_BROKER_EPOCH if b == self.local_broker_id else self._followers[b].broker_epoch) for b in new_isr)
        change = PendingIsrChange(kind, self.leader_epoch, self.partition_epoch, new_isr, with_epochs, self.isr)
        self.pending_isr_change = change
        return change

    def _adopt(self, partition_epoch: int, replicas: Sequence[int], isr: Sequence[int]) -> None:
        invariant(self.local_broker_id in isr, f"committed ISR {list(isr)} lacks the leader")
        invariant(set(isr) <= set(replicas), f"committed ISR {list(isr)} outside replicas {list(replicas)}")
        self.replicas = tuple(replicas)
        self.isr = tuple(isr)
        self.partition_epoch = partition_epoch
        self.pending_isr_change = None
        self._maybe_increment_high_watermark()  # KAFKA-13091: the ISR may now be just the leader

    def _maybe_increment_high_watermark(self) -> bool:
        """Kafka's ``maybeIncrementLeaderHW`` over fsynced offsets.

        Candidates: our durable log end, every maximal-ISR follower, and every eligible follower that is caught
        up but not yet in the ISR (waiting for it keeps it from falling behind forever while the ISR is only
        the leader).  The HW only moves forward.
        """
        if self.strict_min_isr and self.is_under_min_isr:
            return False
        maximal = self.maximal_isr
        candidate = self.durable_log_end_offset
        for replica in self._followers.values():
            if replica.log_end_offset >= candidate:
                continue
            if replica.replica_id in maximal or (
                    replica.isr_eligible
                    and replica.is_caught_up(self.log_end_offset, self.now_ms, self.replica_lag_time_max_ms)):
                candidate = replica.log_end_offset
        if candidate > self.high_watermark:
            self.high_watermark = candidate
            return True
        return False
