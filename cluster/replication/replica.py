"""The role state machine of one partition replica: leader, follower or neither, and the leader's fetch answers.

Committed metadata makes a replica leader or follower of one leader epoch; what each transition resets and what
it keeps is where replication bugs hide (KAFKA-7415: the new epoch's start goes in the epoch cache before any
write; the high watermark a follower knew carries over into its leader epoch; idempotent producer state
survives every role change, or a new leader appends a retried batch twice).  As leader the replica also decides
how to answer each follower fetch: the offset checks (below the log start, beyond the log end without a last
fetched epoch: OFFSET_OUT_OF_RANGE), the epoch check that finds divergence, the follower progress that moves
the high watermark, the ISR expansion it may propose, and whether to park the fetch until data arrives.

The broker's ``Partition`` (asyncio, files, RPCs) and the replication simulator both drive this class, so the
simulator checks the code that runs.  It reads the local log through ``ReplicaLogView`` and returns decisions
(``RoleChange``, ``FollowerFetchAnswer``, ``PendingIsrChange``) that the shell carries out.  Pure and
deterministic: no clock, no I/O; ``now_ms`` comes in with every event that needs time.

``broken`` switches on deliberate bugs (``kraftpy.test.broken`` in the broker, ``--broken`` in the simulator)
here, in the real code path, so the harnesses show they catch them; ``BrokenReplica`` names them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from cluster.core.errors import ErrorCode, KafkaError, OffsetOutOfRangeError
from cluster.replication.follower import FetchPosition, FollowerFetchState, ReplicaLogView
from cluster.replication.leader import (
    UNDEFINED_EPOCH,
    EpochEndOffset,
    PartitionLeaderState,
    PendingIsrChange,
)
from cluster.replication.producer_state import BatchMetadata, ProducerStateTable

__all__ = [
    "NO_LEADER",
    "BrokenReplica",
    "FollowerFetchAnswer",
    "FollowerFetchRequest",
    "PartitionReplicaState",
    "RoleChange",
]

NO_LEADER = -1


class BrokenReplica:
    """Deliberate bugs in the replica state machine, for the fault harnesses to catch."""

    # A new leader forgets its idempotent producers: a retry of a batch it already holds is appended again.
    DROP_PRODUCER_STATE_ON_BECOME_LEADER = "drop_producer_state_on_become_leader"
    # The leader's own unfsynced log end counts toward the high watermark.
    HW_COUNTS_UNFLUSHED = "hw_counts_unflushed"
    # A follower fetching ahead of its fsync is credited with its whole log end, not its durable offset.
    FETCH_AHEAD_COUNTS_UNFLUSHED = "fetch_ahead_counts_unflushed"
    # The leader answers a fetch below its log start offset with whatever it holds from there on, instead of
    # OFFSET_OUT_OF_RANGE (which makes the follower restart its log at the leader's log start).
    SKIP_FETCH_OFFSET_CHECK = "skip_fetch_offset_check"
    ALL = (DROP_PRODUCER_STATE_ON_BECOME_LEADER, HW_COUNTS_UNFLUSHED, FETCH_AHEAD_COUNTS_UNFLUSHED,
           SKIP_FETCH_OFFSET_CHECK)


class FollowerFetchRequest(Protocol):
    """One partition of a follower's fetch as the leader receives it (a ``FetchPosition`` or its wire form)."""

    @property
    def current_leader_epoch(self) -> int: ...

    @property
    def fetch_offset(self) -> int: ...

    @property
    def last_fetched_epoch(self) -> int: ...

    @property
    def log_start_offset(self) -> int: ...

    @property
    def durable_log_end_offset(self) -> int: ...


@dataclasses.dataclass(frozen=True)
class RoleChange:
    """What a become-leader/become-follower did; the shell acts on each flag."""

    new_leader_epoch: bool = False     # this replica began leading a new epoch
    assign_epoch_start: bool = False   # record (leader epoch, log end offset) in the epoch cache now (KAFKA-7415)
    stopped_leading: bool = False      # fail the parked acks=all produces: their fate is unknown to the client
    fetch_restarted: bool = False      # (re)start fetching from ``leader_id``


@dataclasses.dataclass(frozen=True)
class FollowerFetchAnswer:
    """The leader's answer to one follower fetch, before any records are read.

    ``reads_records``: read from the fetch offset (unless parked first); otherwise answer as is.  ``isr_change``
    is an ISR expansion the shell sends to the controller.
    """

    error_code: ErrorCode
    high_watermark: int
    log_start_offset: int
    diverging_epoch: EpochEndOffset | None = None
    high_watermark_advanced: bool = False
    isr_change: PendingIsrChange | None = None

    @property
    def reads_records(self) -> bool:
        return self.error_code == ErrorCode.NONE and self.diverging_epoch is None


class PartitionReplicaState:
    """One partition replica's role (``leader_state`` or ``follower_state``), producer state and epochs."""

    def __init__(self, topic_id: object, partition: int, local_broker_id: int, log: ReplicaLogView, *,
                 high_watermark: int = 0, broken: Iterable[str] = ()) -> None:
        self.topic_id = topic_id
        self.partition = partition
        self.local_broker_id = local_broker_id
        self.log = log
        self.leader_id = NO_LEADER
        self.leader_epoch = -1   # the newest leader epoch applied here
        self._replicas: tuple[int, ...] = ()
        self._isr: tuple[int, ...] = ()
        self.leader_state: PartitionLeaderState | None = None
        self.follower_state: FollowerFetchState | None = None
        self.producer_state = ProducerStateTable()
        self.broken = frozenset(broken)
        # Without a role: the checkpointed high watermark, never above what the log holds.
        self._high_watermark = min(max(high_watermark, 0), log.log_end_offset)

    # -- views ------------------------------------------------------------------------------------------------
    @property
    def replicas(self) -> tuple[int, ...]:
        return self.leader_state.replicas if self.leader_state is not None else self._replicas

    @property
    def isr(self) -> tuple[int, ...]:
        """The committed ISR: as leader, the one its own AlterPartition proposals moved to."""
        return self.leader_state.isr if self.leader_state is not None else self._isr

    @property
    def high_watermark(self) -> int:
        """Offsets below are committed: durable on every ISR member."""
        if self.leader_state is not None:
            return self.leader_state.high_watermark
        if self.follower_state is not None:
            return min(self.follower_state.high_watermark, self.log.log_end_offset)
        return min(self._high_watermark, self.log.log_end_offset)

    # -- roles ------------------------------------------------------------------------------------------------
    def become_leader(self, leader_epoch: int, partition_epoch: int, replicas: Sequence[int], isr: Sequence[int],
                      now_ms: int, replica_lag_time_max_ms: int, min_insync_replicas: int) -> RoleChange:
        """Committed metadata names this broker leader in ``leader_epoch``.

        The same epoch only updates the ISR and replicas.  A new epoch keeps the high watermark this replica
        knew (never above its log end) and its producer state, drops any follower state, and asks the shell to
        record the epoch's start in the epoch cache unless the log already has it.  An older epoch is stale.
        """
        state = self.leader_state
        if leader_epoch < self.leader_epoch:
            return RoleChange()
        self._replicas, self._isr, self.leader_id = tuple(replicas), tuple(isr), self.local_broker_id
        if state is not None and state.leader_epoch == leader_epoch:
            state.on_partition_metadata(leader_epoch, partition_epoch, replicas, isr, now_ms)
            return RoleChange()
        high_watermark = self.high_watermark
        end = self.log.log_end_offset
        durable = end if BrokenReplica.HW_COUNTS_UNFLUSHED in self.broken else self.log.durable_log_end_offset
        self.follower_state = None
        self.leader_epoch = leader_epoch
        self.leader_state = PartitionLeaderState(
            self.topic_id, self.partition, self.local_broker_id, leader_epoch, partition_epoch, replicas, isr,
            end, replica_lag_time_max_ms, min_insync_replicas, now_ms=now_ms, high_watermark=high_watermark,
            durable_log_end_offset=durable)
        if BrokenReplica.DROP_PRODUCER_STATE_ON_BECOME_LEADER in self.broken:
            self.producer_state = ProducerStateTable()
        latest = self.log.latest_epoch
        # Produces waiting from our previous epoch keep waiting: the same log, now committed by this epoch's rules.
        return RoleChange(new_leader_epoch=True, assign_epoch_start=latest == UNDEFINED_EPOCH or leader_epoch > latest)

    def become_follower(self, leader_id: int, leader_epoch: int, replicas: Sequence[int], isr: Sequence[int],
                        now_ms: int, fetch_backoff_ms: int) -> RoleChange:
        """Committed metadata names another leader (or none) in ``leader_epoch``.

        A newer epoch ends our leadership and restarts fetching, even from the same leader (KAFKA-7164: the
        next fetch carries our last fetched epoch, so truncation is re-run).  The high watermark carries over
        as the floor we never truncate below; producer state is kept.  Older or same-epoch news changes nothing
        but the replica set.
        """
        if leader_epoch < self.leader_epoch or (leader_epoch == self.leader_epoch and self.leader_state is not None):
            return RoleChange()
        self._replicas, self._isr = tuple(replicas), tuple(isr)
        if leader_epoch == self.leader_epoch and (self.follower_state is not None or leader_id == NO_LEADER):
            return RoleChange()
        high_watermark = self.high_watermark
        stopped_leading = self.leader_state is not None
        self.leader_state = None
        self._high_watermark = high_watermark
        self.leader_id, self.leader_epoch = leader_id, leader_epoch
        if leader_id == NO_LEADER:
            self.follower_state = None   # nobody to fetch from until a leader is elected
            return RoleChange(stopped_leading=stopped_leading)
        state = self.follower_state
        if state is not None:
            state.on_leader_change(leader_id, leader_epoch, now_ms)
        else:
            self.follower_state = FollowerFetchState(
                self.topic_id, self.partition, self.local_broker_id, leader_id, leader_epoch,
                high_watermark=high_watermark, fetch_backoff_ms=fetch_backoff_ms)
        return RoleChange(stopped_leading=stopped_leading, fetch_restarted=True)

    # -- leader: produce ---------------------------------------------------------------------------------------
    def check_append_allowed(self, required_acks: int) -> None:
        """Before anything else about a produced batch (Kafka's ``Partition.appendRecordsToLeader``): not the
        leader, or acks=all with the ISR under min.insync.replicas, raises KafkaError.  Checked before the
        sequence on purpose: a retry answered OUT_OF_ORDER_SEQUENCE_NUMBER here instead of the retriable
        NOT_ENOUGH_REPLICAS makes librdkafka re-send every unacknowledged record under a new producer id."""
        if self.leader_state is None:
            raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER, f"partition {self.partition}: not the leader")
        self.leader_state.check_append_allowed(required_acks)

    def check_producer_sequence(self, producer_id: int, producer_epoch: int, base_sequence: int,
                                last_offset_delta: int) -> BatchMetadata | None:
        """The original batch when this one is a retry of it (answer with its offsets, append nothing), None
        when it may be appended; raises KafkaError for an out-of-order or fenced producer."""
        return self.producer_state.check_append(producer_id, producer_epoch, base_sequence, last_offset_delta)

    def on_leader_append(self, producer_id: int, producer_epoch: int, base_sequence: int, last_offset_delta: int,
                         base_offset: int, max_timestamp: int, now_ms: int) -> bool:
        """The shell appended an accepted batch.  Returns True if the high watermark advanced."""
        self.producer_state.replay(producer_id, producer_epoch, base_sequence, last_offset_delta, base_offset,
                                   max_timestamp)
        return self.on_local_append(now_ms)

    # -- leader: local log --------------------------------------------------------------------------------------
    def on_local_append(self, now_ms: int) -> bool:
        """The leader's log grew.  Returns True if the high watermark advanced."""
        state = self.leader_state
        advanced = state.on_local_append(self.log.log_end_offset, now_ms)
        if BrokenReplica.HW_COUNTS_UNFLUSHED in self.broken:
            advanced |= state.on_local_flushed(self.log.log_end_offset, now_ms)
        return advanced

    def on_local_flushed(self, now_ms: int | None = None) -> bool:
        """An fsync made more of the log durable.  Returns True if the high watermark advanced."""
        state = self.leader_state
        return state is not None and state.on_local_flushed(self.log.durable_log_end_offset, now_ms)

    # -- leader: follower fetches -------------------------------------------------------------------------------
    def answer_follower_fetch(self, replica_id: int, broker_epoch: int, registered_broker_epoch: int,
                              fetch: FollowerFetchRequest, now_ms: int) -> FollowerFetchAnswer:
        """Validates one follower fetch and records its progress (Kafka's ``Partition.fetchRecords`` as leader).

        OFFSET_OUT_OF_RANGE below our log start offset (the follower restarts its log there) and beyond our log
        end when the follower names no last fetched epoch (with one, the epoch check finds the divergence and
        says where to truncate).  Progress may advance the high watermark and make the follower eligible to
        rejoin the ISR, proposed here as ``isr_change``.
        """
        log, state = self.log, self.leader_state
        log_start_offset = log.log_start_offset
        if state is None:
            return FollowerFetchAnswer(ErrorCode.NOT_LEADER_OR_FOLLOWER, self.high_watermark, log_start_offset)
        try:
            self._check_fetch_offset(fetch)
            epoch_end = (log.end_offset_for_epoch(fetch.last_fetched_epoch)
                         if fetch.last_fetched_epoch != UNDEFINED_EPOCH else None)
            durable = fetch.durable_log_end_offset
            if BrokenReplica.FETCH_AHEAD_COUNTS_UNFLUSHED in self.broken:
                durable = None
            result = state.on_follower_fetch(
                replica_id, fetch.fetch_offset, now_ms, log.log_end_offset,
                last_fetched_epoch=fetch.last_fetched_epoch, leader_epoch_end_offset=epoch_end,
                current_leader_epoch=fetch.current_leader_epoch, log_start_offset=fetch.log_start_offset,
                broker_epoch=broker_epoch, registered_broker_epoch=registered_broker_epoch,
                durable_log_end_offset=durable)
        except KafkaError as exc:
            return FollowerFetchAnswer(exc.error_code, state.high_watermark, log_start_offset)
        if result.diverging_epoch is not None:
            return FollowerFetchAnswer(ErrorCode.NONE, result.high_watermark, log_start_offset,
                                       result.diverging_epoch)
        return FollowerFetchAnswer(ErrorCode.NONE, result.high_watermark, log_start_offset,
                                   high_watermark_advanced=result.high_watermark_advanced,
                                   isr_change=state.maybe_expand_isr(replica_id))

    def _check_fetch_offset(self, fetch: FollowerFetchRequest) -> None:
        log = self.log
        if fetch.fetch_offset > log.log_end_offset and fetch.last_fetched_epoch == UNDEFINED_EPOCH:
            raise OffsetOutOfRangeError(f"partition {self.partition}: follower fetch offset {fetch.fetch_offset} "
                                        f"beyond log end offset {log.log_end_offset}")
        if BrokenReplica.SKIP_FETCH_OFFSET_CHECK in self.broken:
            return
        if fetch.fetch_offset < log.log_start_offset:
            raise OffsetOutOfRangeError(f"partition {self.partition}: follower fetch offset {fetch.fetch_offset} "
                                        f"below log start offset {log.log_start_offset}")

    def parks_follower_fetch(self, fetch: FollowerFetchRequest, answer: FollowerFetchAnswer) -> bool:
        """Whether to hold the answer until our log grows (or the follower's max wait passes).

        Only a valid fetch at our log end waits.  A fetch sent ahead of the follower's fsync is never parked:
        the durable offset it reports is already stale, and the follower sends a fresh one once the fsync is
        done (parking it would delay the high watermark by the whole wait).
        """
        return (answer.reads_records
                and fetch.fetch_offset >= self.log.log_end_offset
                and fetch.durable_log_end_offset >= fetch.fetch_offset)

    # -- leader: ISR ------------------------------------------------------------------------------------------
    def refresh_isr_eligibility(self, is_active: Callable[[int], bool]) -> bool:
        """Kafka's isReplicaIsrEligible from the metadata image: a fenced broker, or one in controlled shutdown,
        cannot join the ISR and does not hold back the high watermark unless it is in the ISR already.
        Returns True if the high watermark advanced."""
        state, advanced = self.leader_state, False
        if state is None:
            return False
        for follower in state.followers():
            eligible = is_active(follower.replica_id)
            if follower.isr_eligible != eligible:
                advanced |= state.set_replica_isr_eligible(follower.replica_id, eligible)
        return advanced

    def maybe_shrink_isr(self, now_ms: int) -> PendingIsrChange | None:
        """The isr-expiration check: a proposal dropping lagging followers, for the shell to send."""
        state = self.leader_state
        if state is None or len(state.replicas) == 1:
            return None
        return state.maybe_shrink_isr(now_ms)

    # -- follower ---------------------------------------------------------------------------------------------
    def next_fetch(self, now_ms: int) -> FetchPosition | None:
        """The next fetch to send to our leader, or None (see ``FollowerFetchState.next_fetch``)."""
        state = self.follower_state
        if state is None or self.leader_id == NO_LEADER:
            return None
        return state.next_fetch(now_ms, self.log)
