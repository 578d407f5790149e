"""The replica role state machine: what each transition resets and keeps, and the leader's fetch answers.

These rules used to be copied between the broker's Partition/ReplicaManager and the replication simulator (and
the copies differed: only the broker checked the log start offset); both now drive ``PartitionReplicaState``.
"""

from __future__ import annotations

import dataclasses

from cluster.core.errors import ErrorCode
from cluster.replication import FetchPosition, IsrChangeKind
from cluster.replication.replica import NO_LEADER, BrokenReplica, PartitionReplicaState, RoleChange

LAG_MS, MIN_ISR = 10_000, 2


@dataclasses.dataclass
class FakeLog:
    """A ``ReplicaLogView``: one epoch per (start offset) entry, no batches."""

    log_start_offset: int = 0
    log_end_offset: int = 0
    durable_log_end_offset: int = 0
    epochs: list[tuple[int, int]] = dataclasses.field(default_factory=list)   # (epoch, start offset)

    @property
    def latest_epoch(self) -> int:
        return self.epochs[-1][0] if self.epochs else -1

    def end_offset_for_epoch(self, leader_epoch: int) -> tuple[int, int]:
        for i in range(len(self.epochs) - 1, -1, -1):
            epoch, _start = self.epochs[i]
            if epoch <= leader_epoch:
                end = self.epochs[i + 1][1] if i + 1 < len(self.epochs) else self.log_end_offset
                return epoch, end
        return -1, -1


def replica(log: FakeLog, high_watermark: int = 0, broken=()) -> PartitionReplicaState:
    return PartitionReplicaState("t", 0, 1, log, high_watermark=high_watermark, broken=broken)


def lead(state: PartitionReplicaState, epoch: int, isr=(1, 2, 3)):
    return state.become_leader(epoch, epoch, (1, 2, 3), isr, 0, LAG_MS, MIN_ISR)


def fetch(fetch_offset: int, last_fetched_epoch: int = 0, durable: int | None = None,
          current_leader_epoch: int = 1) -> FetchPosition:
    return FetchPosition(1, current_leader_epoch, fetch_offset, last_fetched_epoch, 0,
                         fetch_offset if durable is None else durable)


def test_a_new_leader_epoch_keeps_the_high_watermark_and_producers_and_asks_for_the_epoch_start():
    log = FakeLog(log_end_offset=10, durable_log_end_offset=10, epochs=[(0, 0)])
    state = replica(log, high_watermark=7)
    producers = state.producer_state
    change = lead(state, 1)
    assert change.new_leader_epoch and change.assign_epoch_start and not change.stopped_leading
    assert state.leader_state.high_watermark == 7 and state.producer_state is producers
    assert state.leader_id == 1 and state.leader_epoch == 1


def test_the_same_epoch_again_only_updates_the_isr_and_an_older_one_is_stale():
    log = FakeLog(log_end_offset=5, durable_log_end_offset=5, epochs=[(0, 0)])
    state = replica(log)
    lead(state, 3)
    leader_state = state.leader_state
    assert state.become_leader(3, 4, (1, 2, 3), (1, 2), 0, LAG_MS, MIN_ISR) == RoleChange()
    assert state.leader_state is leader_state and state.isr == (1, 2)
    assert not lead(state, 2).new_leader_epoch
    assert not state.become_follower(2, 2, (1, 2, 3), (2, 3), 0, 100).fetch_restarted
    assert state.leader_state is leader_state


def test_becoming_follower_stops_leading_and_carries_the_high_watermark_over():
    log = FakeLog(log_end_offset=5, durable_log_end_offset=5, epochs=[(0, 0)])
    state = replica(log, high_watermark=4)
    lead(state, 1)
    change = state.become_follower(2, 2, (1, 2, 3), (2, 3), 0, 100)
    assert change.stopped_leading and change.fetch_restarted
    assert state.leader_state is None and state.follower_state.high_watermark == 4
    assert state.next_fetch(0).leader_id == 2
    # A newer epoch restarts fetching even from the same leader (KAFKA-7164); the same epoch does not.
    assert state.become_follower(2, 3, (1, 2, 3), (2, 3), 0, 100).fetch_restarted
    assert not state.become_follower(2, 3, (1, 2, 3), (2,), 0, 100).fetch_restarted
    # No leader: nothing to fetch from, the high watermark is kept.
    state.become_follower(NO_LEADER, 4, (1, 2, 3), (2,), 0, 100)
    assert state.follower_state is None and state.next_fetch(0) is None and state.high_watermark == 4


def test_a_new_leader_that_forgets_its_producers_only_when_broken():
    log = FakeLog(log_end_offset=5, durable_log_end_offset=5)
    state = replica(log, broken=(BrokenReplica.DROP_PRODUCER_STATE_ON_BECOME_LEADER,))
    producers = state.producer_state
    lead(state, 1)
    assert state.producer_state is not producers


def test_a_fetch_below_the_log_start_or_beyond_the_end_without_an_epoch_is_out_of_range():
    log = FakeLog(log_start_offset=10, log_end_offset=20, durable_log_end_offset=20, epochs=[(1, 10)])
    state = replica(log, high_watermark=10)
    lead(state, 1)
    below = state.answer_follower_fetch(2, 5, 5, fetch(5, last_fetched_epoch=-1), 0)
    assert below.error_code == ErrorCode.OFFSET_OUT_OF_RANGE and below.log_start_offset == 10
    assert not below.reads_records
    beyond = state.answer_follower_fetch(2, 5, 5, fetch(25, last_fetched_epoch=-1), 0)
    assert beyond.error_code == ErrorCode.OFFSET_OUT_OF_RANGE
    broken = replica(log, high_watermark=10, broken=(BrokenReplica.SKIP_FETCH_OFFSET_CHECK,))
    lead(broken, 1)
    assert broken.answer_follower_fetch(2, 5, 5, fetch(5, last_fetched_epoch=-1), 0).reads_records


def test_a_non_leader_answers_not_leader_and_a_diverging_follower_gets_the_epoch_not_records():
    log = FakeLog(log_end_offset=20, durable_log_end_offset=20, epochs=[(0, 0), (2, 12)])
    state = replica(log)
    assert state.answer_follower_fetch(2, 5, 5, fetch(0), 0).error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
    lead(state, 3)
    answer = state.answer_follower_fetch(2, 5, 5, fetch(15, last_fetched_epoch=1, current_leader_epoch=3), 0)
    assert answer.error_code == ErrorCode.NONE and answer.diverging_epoch.end_offset == 12
    assert not answer.reads_records


def test_a_caught_up_follower_is_parked_and_proposed_for_the_isr_but_a_fetch_ahead_is_not_parked():
    log = FakeLog(log_end_offset=20, durable_log_end_offset=20, epochs=[(1, 0)])
    state = replica(log)
    state.become_leader(1, 1, (1, 2, 3), (1, 3), 0, LAG_MS, MIN_ISR)
    at_end = fetch(20, last_fetched_epoch=1)
    answer = state.answer_follower_fetch(2, 5, 5, at_end, 0)
    assert answer.reads_records and state.parks_follower_fetch(at_end, answer)
    assert answer.isr_change is not None and answer.isr_change.kind is IsrChangeKind.EXPAND
    ahead = fetch(20, last_fetched_epoch=1, durable=15)
    assert not state.parks_follower_fetch(ahead, state.answer_follower_fetch(3, 5, 5, ahead, 0))
    behind = fetch(10, last_fetched_epoch=1)
    assert not state.parks_follower_fetch(behind, state.answer_follower_fetch(3, 5, 5, behind, 0))


def test_a_fetch_ahead_counts_only_its_durable_offset_unless_broken():
    for broken, expected in (((), 15), ((BrokenReplica.FETCH_AHEAD_COUNTS_UNFLUSHED,), 20)):
        log = FakeLog(log_end_offset=20, durable_log_end_offset=20, epochs=[(1, 0)])
        state = replica(log, broken=broken)
        state.become_leader(1, 1, (1, 2), (1, 2), 0, LAG_MS, MIN_ISR)
        state.answer_follower_fetch(2, 5, 5, fetch(20, last_fetched_epoch=1, durable=15), 0)
        assert state.leader_state.follower(2).log_end_offset == expected


def test_the_leaders_unflushed_end_counts_toward_the_high_watermark_only_when_broken():
    for broken, expected in (((), 0), ((BrokenReplica.HW_COUNTS_UNFLUSHED,), 8)):
        log = FakeLog(log_end_offset=0, durable_log_end_offset=0)
        state = replica(log, broken=broken)
        state.become_leader(1, 1, (1,), (1,), 0, LAG_MS, 1)
        log.log_end_offset = 8
        state.on_local_append(0)
        assert state.high_watermark == expected
        log.durable_log_end_offset = 8
        state.on_local_flushed(0)
        assert state.high_watermark == 8


def test_isr_shrink_proposals_come_only_from_a_multi_replica_leader():
    log = FakeLog(log_end_offset=5, durable_log_end_offset=5)
    state = replica(log)
    assert state.maybe_shrink_isr(0) is None
    lead(state, 1)
    assert state.maybe_shrink_isr(LAG_MS * 3).kind is IsrChangeKind.SHRINK


def test_the_isr_a_leader_reports_is_the_one_its_applied_alter_partition_committed():
    log = FakeLog(log_end_offset=5, durable_log_end_offset=5)
    state = replica(log)
    lead(state, 1)
    change = state.maybe_shrink_isr(LAG_MS * 3)
    state.leader_state.on_alter_partition_response(change, ErrorCode.NONE, leader_epoch=1, partition_epoch=2,
                                                   isr=change.new_isr)
    assert state.isr == change.new_isr == (1,)
    state.become_follower(2, 2, (1, 2, 3), (2, 3), 0, 100)
    assert state.isr == (2, 3)
