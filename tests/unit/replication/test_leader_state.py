"""Unit tests of PartitionLeaderState: one test per replication rule (replication.md §2.1-2.4, §2.7)."""

from __future__ import annotations

import pytest

from cluster.core.errors import ErrorCode, InvariantViolation, KafkaError, OffsetOutOfRangeError
from cluster.replication.leader import (
    AlterPartitionOutcome,
    EpochEndOffset,
    IsrChangeKind,
    PartitionLeaderState,
    check_current_leader_epoch,
    find_diverging_epoch,
)

LAG_MS = 1000
T0 = 100_000


def make_leader(replicas=(0, 1, 2), isr=(0, 1, 2), *, start=0, min_isr=2, hw=0, strict=True, durable=None,
                partition_epoch=5, leader_epoch=3) -> PartitionLeaderState:
    return PartitionLeaderState("topic-id", 0, 0, leader_epoch, partition_epoch, replicas, isr, start, LAG_MS,
                                min_isr, now_ms=T0, high_watermark=hw, durable_log_end_offset=durable,
                                strict_min_isr=strict)


def write(leader: PartitionLeaderState, end: int, now_ms: int = T0) -> None:
    """The leader appends and fsyncs up to ``end``."""
    leader.on_local_append(end, now_ms)
    leader.on_local_flushed(end, now_ms)


def fetch(leader: PartitionLeaderState, replica: int, offset: int, now_ms: int = T0):
    return leader.on_follower_fetch(replica, offset, now_ms, leader.log_end_offset)


def commit(leader: PartitionLeaderState, change) -> AlterPartitionOutcome:
    """The controller accepts ``change`` as is."""
    return leader.on_alter_partition_response(change, ErrorCode.NONE, leader_epoch=change.leader_epoch,
                                              partition_epoch=change.partition_epoch + 1, isr=change.new_isr)


# -- high watermark --------------------------------------------------------------------------------------------
def test_high_watermark_is_the_minimum_fetch_offset_over_the_isr():
    leader = make_leader()
    write(leader, 10)
    fetch(leader, 1, 10)
    result = fetch(leader, 2, 6)
    assert result.high_watermark == 6 and result.high_watermark_advanced
    assert fetch(leader, 2, 10).high_watermark == 10
    leader.check_invariants()


def test_high_watermark_counts_the_leader_only_up_to_its_fsynced_offset():
    leader = make_leader()
    leader.on_local_append(10, T0)
    fetch(leader, 1, 10)
    fetch(leader, 2, 10)
    assert leader.high_watermark == 0  # nothing on the leader's disk yet
    leader.on_local_flushed(4, T0)
    assert leader.high_watermark == 4
    assert leader.on_local_flushed(10, T0) and leader.high_watermark == 10


def test_high_watermark_waits_for_an_isr_follower_that_has_not_fetched_yet():
    leader = make_leader()
    write(leader, 10)
    fetch(leader, 1, 10)
    assert leader.high_watermark == 0  # follower 2's progress is unknown to a new leader
    fetch(leader, 2, 10)
    assert leader.high_watermark == 10


def test_high_watermark_never_decreases_when_a_slow_follower_is_added_back():
    leader = make_leader(isr=(0, 1), min_isr=1)
    write(leader, 10)
    fetch(leader, 1, 10)
    assert leader.high_watermark == 10
    # Follower 2 fetches from 4: not caught up to the leader's end, so it does not hold the HW back ...
    assert fetch(leader, 2, 4).high_watermark == 10
    # ... and it cannot join below the HW.
    assert leader.maybe_expand_isr(2) is None
    fetch(leader, 2, 10)
    change = leader.maybe_expand_isr(2)
    assert change is not None and change.kind is IsrChangeKind.EXPAND and change.new_isr == (0, 1, 2)
    assert commit(leader, change) is AlterPartitionOutcome.APPLIED
    assert leader.isr == (0, 1, 2) and leader.high_watermark == 10
    leader.check_invariants()


def test_a_caught_up_follower_outside_the_isr_holds_the_high_watermark_but_never_lowers_it():
    leader = make_leader(isr=(0, 1), min_isr=1)
    write(leader, 8)
    fetch(leader, 2, 8)           # caught up with the leader's end at T0
    write(leader, 12, T0 + 10)
    fetch(leader, 1, 12, T0 + 10)
    # Kafka waits for a caught-up, eligible follower so that it can ever reach the HW and join.
    assert leader.high_watermark == 8
    fetch(leader, 2, 12, T0 + 20)
    assert leader.high_watermark == 12
    write(leader, 14, T0 + 30)
    fetch(leader, 1, 14, T0 + 30)
    assert leader.high_watermark == 12   # follower 2 is caught up (by time) and at 12
    # Later follower 2 lags beyond the lag time: it no longer holds the HW ...
    write(leader, 20, T0 + 2000)
    fetch(leader, 1, 20, T0 + 2000)
    fetch(leader, 2, 12, T0 + 2000)
    assert leader.high_watermark == 20
    write(leader, 30, T0 + 2100)
    fetch(leader, 1, 30, T0 + 2100)
    assert leader.high_watermark == 30
    # ... then reaches the leader end seen at its previous fetch: caught up again, but below the HW.
    fetch(leader, 2, 20, T0 + 2100)
    assert leader.follower(2).is_caught_up(30, T0 + 2100, LAG_MS)
    assert leader.high_watermark == 30
    leader.check_invariants()


def test_a_lagging_follower_outside_the_isr_does_not_hold_the_high_watermark():
    leader = make_leader(isr=(0, 1), min_isr=1)
    write(leader, 10)
    fetch(leader, 2, 0)
    fetch(leader, 1, 10)
    assert leader.high_watermark == 10


def test_pending_expansion_counts_toward_the_high_watermark():
    leader = make_leader(isr=(0, 1), min_isr=1)
    write(leader, 10)
    fetch(leader, 1, 10)
    fetch(leader, 2, 10)
    change = leader.maybe_expand_isr(2)
    assert change is not None and leader.maximal_isr == (0, 1, 2)
    write(leader, 20, T0 + 5 * LAG_MS)   # follower 2 is no longer "caught up" by time, but it is in the maximal ISR
    fetch(leader, 1, 20, T0 + 5 * LAG_MS)
    assert leader.high_watermark == 10
    fetch(leader, 2, 20, T0 + 5 * LAG_MS)
    assert leader.high_watermark == 20


def test_pending_shrink_keeps_the_old_isr_until_the_controller_commits_it():
    leader = make_leader(min_isr=1)
    write(leader, 10)
    fetch(leader, 1, 10)
    fetch(leader, 2, 5)
    assert leader.high_watermark == 5
    change = leader.maybe_shrink_isr(T0 + LAG_MS + 1)
    assert change is not None and change.new_isr == (0, 1)
    assert leader.isr == (0, 1, 2) and leader.high_watermark == 5   # cannot assume the shrink succeeds
    assert commit(leader, change) is AlterPartitionOutcome.APPLIED
    assert leader.isr == (0, 1) and leader.partition_epoch == 6
    assert leader.high_watermark == 10   # recomputed on the ISR change (KAFKA-13091)


def test_high_watermark_is_frozen_while_the_isr_is_under_min_isr():
    strict = make_leader(isr=(0,), min_isr=2)
    write(strict, 10)
    assert strict.is_under_min_isr and strict.high_watermark == 0
    loose = make_leader(isr=(0,), min_isr=2, strict=False)
    write(loose, 10)
    assert loose.high_watermark == 10


def test_min_isr_is_capped_by_the_replication_factor():
    leader = make_leader(replicas=(0,), isr=(0,), min_isr=2)
    assert not leader.is_under_min_isr
    write(leader, 3)
    assert leader.high_watermark == 3
    assert leader.check_acks_all(3).done


def test_high_watermark_behind_epoch_start_is_reported_for_list_offsets():
    leader = make_leader(start=20, hw=15, durable=20)
    assert leader.high_watermark_behind_epoch_start
    fetch(leader, 1, 20)
    fetch(leader, 2, 20)
    assert leader.high_watermark == 20 and not leader.high_watermark_behind_epoch_start


# -- follower progress -----------------------------------------------------------------------------------------
def test_follower_is_caught_up_as_of_its_previous_fetch_when_it_reaches_the_leader_end_seen_then():
    leader = make_leader()
    write(leader, 10, T0)
    fetch(leader, 1, 10, T0)                  # at the end: caught up at T0
    write(leader, 12, T0 + 600)
    fetch(leader, 1, 10, T0 + 600)            # behind: unchanged
    assert leader.follower(1).last_caught_up_time_ms == T0
    write(leader, 15, T0 + 1200)
    fetch(leader, 1, 12, T0 + 1200)           # reached the end seen at the previous fetch: caught up at T0 + 600
    assert leader.follower(1).last_caught_up_time_ms == T0 + 600
    fetch(leader, 1, 15, T0 + 1300)
    assert leader.follower(1).last_caught_up_time_ms == T0 + 1300


def test_a_follower_that_always_trails_a_busy_leader_stays_in_sync():
    leader = make_leader(min_isr=1)
    end = 0
    for step in range(1, 30):
        now = T0 + step * 300
        fetch(leader, 1, end, now)            # it fetched everything the leader had at its previous fetch
        fetch(leader, 2, leader.log_end_offset, now)
        end = leader.log_end_offset
        write(leader, end + 1, now)           # a small produce lands after every fetch
        assert leader.maybe_shrink_isr(now) is None


def test_shrink_only_after_replica_lag_time_max_ms():
    leader = make_leader(min_isr=1)
    write(leader, 10)
    fetch(leader, 1, 10)
    fetch(leader, 2, 3)
    assert leader.out_of_sync_replicas(T0 + LAG_MS) == ()
    assert leader.maybe_shrink_isr(T0 + LAG_MS) is None
    change = leader.maybe_shrink_isr(T0 + LAG_MS + 1)
    assert change is not None and change.kind is IsrChangeKind.SHRINK and change.new_isr == (0, 1)
    assert change.last_committed_isr == (0, 1, 2) and change.partition_epoch == 5 and change.leader_epoch == 3


def test_an_idle_follower_at_the_leader_end_is_never_shrunk():
    leader = make_leader()
    write(leader, 10)
    fetch(leader, 1, 10)
    fetch(leader, 2, 10)
    assert leader.maybe_shrink_isr(T0 + 100 * LAG_MS) is None


def test_an_isr_follower_that_never_fetches_a_new_leader_is_shrunk_after_the_lag():
    leader = make_leader()
    write(leader, 10)
    fetch(leader, 1, 10, T0 + LAG_MS)
    change = leader.maybe_shrink_isr(T0 + LAG_MS + 1)
    assert change is not None and change.new_isr == (0, 1)


def test_expand_only_when_caught_up_to_max_of_high_watermark_and_epoch_start():
    leader = make_leader(isr=(0, 1), start=20, hw=15, durable=20, min_isr=1)
    fetch(leader, 1, 20)
    assert leader.high_watermark == 20
    leader2 = make_leader(isr=(0, 1), start=20, hw=15, durable=20, min_isr=1)
    fetch(leader2, 2, 15)              # at the HW, below the epoch start: could miss committed data
    assert leader2.maybe_expand_isr(2) is None
    fetch(leader2, 2, 19)
    assert leader2.maybe_expand_isr(2) is None
    fetch(leader2, 2, 20)
    assert leader2.maybe_expand_isr(2) is not None


def test_expand_refuses_ineligible_and_unknown_replicas():
    leader = make_leader(isr=(0, 1), min_isr=1)
    write(leader, 5)
    fetch(leader, 2, 5)
    leader.set_replica_isr_eligible(2, False)
    assert leader.maybe_expand_isr(2) is None
    assert leader.maybe_expand_isr(7) is None
    assert leader.maybe_expand_isr(1) is None  # already in the ISR
    leader.set_replica_isr_eligible(2, True)
    assert leader.maybe_expand_isr(2) is not None


def test_expansion_carries_the_broker_epochs_seen_in_fetches():
    leader = make_leader(isr=(0, 1), min_isr=1)
    leader.on_follower_fetch(2, 0, T0, 0, broker_epoch=42, registered_broker_epoch=42)
    change = leader.maybe_expand_isr(2)
    assert change is not None and dict(change.new_isr_with_epochs)[2] == 42


# -- AlterPartition round trips ----------------------------------------------------------------------------------
def test_only_one_isr_change_in_flight():
    leader = make_leader(isr=(0, 1), min_isr=1)
    write(leader, 10)
    fetch(leader, 2, 10)
    change = leader.maybe_expand_isr(2)
    assert leader.pending_isr_change is change
    assert leader.maybe_shrink_isr(T0 + 10 * LAG_MS) is None
    assert commit(leader, change) is AlterPartitionOutcome.APPLIED
    assert leader.pending_isr_change is None
    assert leader.maybe_shrink_isr(T0 + 10 * LAG_MS) is not None


def test_stale_alter_partition_response_is_ignored():
    leader = make_leader(min_isr=1)
    write(leader, 10)
    fetch(leader, 1, 10)
    first = leader.maybe_shrink_isr(T0 + LAG_MS + 1)
    assert first.new_isr == (0, 1)
    assert leader.on_alter_partition_response(first, ErrorCode.INELIGIBLE_REPLICA) is AlterPartitionOutcome.REVERTED
    second = leader.maybe_shrink_isr(T0 + LAG_MS + 2)
    assert second is not None and second is not first
    # A late duplicate answer to the first request must not be applied.
    assert commit(leader, first) is AlterPartitionOutcome.STALE_IGNORED
    assert leader.isr == (0, 1, 2) and leader.partition_epoch == 5 and leader.pending_isr_change is second


def test_response_with_a_different_leader_epoch_or_older_partition_epoch_waits_for_metadata():
    leader = make_leader(min_isr=1)
    change = leader.maybe_shrink_isr(T0 + LAG_MS + 1)
    assert leader.on_alter_partition_response(change, ErrorCode.NONE, leader_epoch=4, partition_epoch=6,
                                              isr=(0, 1)) is AlterPartitionOutcome.AWAIT_METADATA
    assert leader.on_alter_partition_response(change, ErrorCode.NONE, leader_epoch=3, partition_epoch=4,
                                              isr=(0, 1)) is AlterPartitionOutcome.AWAIT_METADATA
    assert leader.isr == (0, 1, 2) and leader.pending_isr_change is change
    assert not leader.on_partition_metadata(3, 4, (0, 1, 2), (0, 1), T0)   # older metadata: ignored
    assert leader.on_partition_metadata(3, 7, (0, 1, 2), (0, 1), T0 + LAG_MS + 2)
    assert leader.isr == (0, 1) and leader.partition_epoch == 7 and leader.pending_isr_change is None


@pytest.mark.parametrize("error, outcome", [
    (ErrorCode.OPERATION_NOT_ATTEMPTED, AlterPartitionOutcome.REVERTED),
    (ErrorCode.INELIGIBLE_REPLICA, AlterPartitionOutcome.REVERTED),
    (ErrorCode.FENCED_LEADER_EPOCH, AlterPartitionOutcome.AWAIT_METADATA),
    (ErrorCode.INVALID_UPDATE_VERSION, AlterPartitionOutcome.AWAIT_METADATA),
    (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, AlterPartitionOutcome.AWAIT_METADATA),
    (ErrorCode.NOT_CONTROLLER, AlterPartitionOutcome.RETRY),
    (ErrorCode.STALE_BROKER_EPOCH, AlterPartitionOutcome.RETRY),
    (ErrorCode.REQUEST_TIMED_OUT, AlterPartitionOutcome.RETRY),
])
def test_alter_partition_errors(error, outcome):
    leader = make_leader(min_isr=1)
    change = leader.maybe_shrink_isr(T0 + LAG_MS + 1)
    assert leader.on_alter_partition_response(change, error) is outcome
    assert leader.isr == (0, 1, 2)
    assert (leader.pending_isr_change is None) == (outcome is AlterPartitionOutcome.REVERTED)


def test_metadata_with_the_same_partition_epoch_keeps_the_pending_change():
    # The controller may still commit the pending expansion: dropping it would let the HW pass follower 2.
    leader = make_leader(isr=(0, 1), min_isr=1)
    fetch(leader, 2, 0)
    change = leader.maybe_expand_isr(2)
    assert not leader.on_partition_metadata(3, 5, (0, 1, 2), (0, 1), T0 + 10 * LAG_MS)
    assert leader.pending_isr_change is change
    write(leader, 4, T0 + 10 * LAG_MS)
    fetch(leader, 1, 4, T0 + 10 * LAG_MS)
    assert leader.high_watermark == 0


def test_metadata_with_a_new_replica_set_tracks_the_new_follower():
    leader = make_leader(min_isr=1)
    assert leader.on_partition_metadata(3, 6, (0, 1, 2, 3), (0, 1, 2), T0)
    assert leader.follower(3).log_end_offset == -1
    assert leader.on_partition_metadata(3, 7, (0, 1, 3), (0, 1), T0)
    with pytest.raises(KafkaError) as info:
        leader.follower(2)
    assert info.value.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
    leader.check_invariants()


# -- acks=all and min ISR ---------------------------------------------------------------------------------------
def test_not_enough_replicas_before_append_only_for_acks_all():
    leader = make_leader(isr=(0,), min_isr=2)
    with pytest.raises(KafkaError) as info:
        leader.check_append_allowed(-1)
    assert info.value.error_code == ErrorCode.NOT_ENOUGH_REPLICAS
    leader.check_append_allowed(1)
    leader.check_append_allowed(0)
    make_leader(isr=(0, 1), min_isr=2).check_append_allowed(-1)


def test_acks_all_waits_for_the_high_watermark():
    leader = make_leader(min_isr=2)
    leader.check_append_allowed(-1)
    write(leader, 5)
    assert not leader.check_acks_all(5).done
    fetch(leader, 1, 5)
    assert not leader.check_acks_all(5).done
    fetch(leader, 2, 5)
    assert leader.check_acks_all(5) == leader.check_acks_all(5) and leader.check_acks_all(5).done
    assert leader.check_acks_all(5).error_code == ErrorCode.NONE


def test_not_enough_replicas_after_append_when_the_isr_shrinks_below_min_while_waiting():
    leader = make_leader(isr=(0, 1), min_isr=2)
    write(leader, 5)
    check = leader.check_acks_all(5)
    assert not check.done
    change = leader.maybe_shrink_isr(T0 + LAG_MS + 1)
    assert not leader.check_acks_all(5).done   # shrink pending: the old ISR still counts
    commit(leader, change)
    check = leader.check_acks_all(5)
    assert check.done and check.error_code == ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND
    assert leader.high_watermark == 0          # strict min ISR: nothing became committed


def test_acks_all_covered_before_the_shrink_but_answered_after_reports_after_append():
    leader = make_leader(isr=(0, 1), min_isr=2, strict=False)
    write(leader, 5)
    fetch(leader, 1, 5)
    assert leader.high_watermark == 5
    write(leader, 8)
    commit(leader, leader.maybe_shrink_isr(T0 + LAG_MS + 1))
    assert leader.check_acks_all(5).error_code == ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND


# -- fetch validation ------------------------------------------------------------------------------------------
def test_fetch_with_a_stale_broker_epoch_is_rejected_and_not_recorded():
    leader = make_leader()
    write(leader, 10)
    with pytest.raises(KafkaError) as info:
        leader.on_follower_fetch(1, 10, T0, 10, broker_epoch=7, registered_broker_epoch=8)
    assert info.value.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
    assert leader.follower(1).log_end_offset == -1
    leader.on_follower_fetch(1, 10, T0, 10, broker_epoch=8, registered_broker_epoch=8)
    assert leader.follower(1).log_end_offset == 10


def test_fetch_with_a_wrong_current_leader_epoch_is_fenced():
    leader = make_leader(leader_epoch=3)
    for epoch, code in ((2, ErrorCode.FENCED_LEADER_EPOCH), (4, ErrorCode.UNKNOWN_LEADER_EPOCH)):
        with pytest.raises(KafkaError) as info:
            leader.on_follower_fetch(1, 0, T0, 0, current_leader_epoch=epoch)
        assert info.value.error_code == code
    check_current_leader_epoch(-1, 3)
    check_current_leader_epoch(3, 3)


def test_fetch_from_an_unknown_replica_is_refused():
    leader = make_leader()
    for replica in (0, 9):
        with pytest.raises(KafkaError) as info:
            fetch(leader, replica, 0)
        assert info.value.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER


def test_diverging_fetch_returns_the_epoch_end_and_records_no_progress():
    leader = make_leader(min_isr=1)
    write(leader, 10)
    fetch(leader, 2, 8)
    # The follower claims offsets up to 12 in epoch 2; our epoch 2 ended at 6 (epoch 3 started there).
    result = leader.on_follower_fetch(1, 12, T0, 10, last_fetched_epoch=2, leader_epoch_end_offset=(2, 6))
    assert result.diverging_epoch == EpochEndOffset(2, 6) and not result.high_watermark_advanced
    assert leader.follower(1).log_end_offset == -1
    result = leader.on_follower_fetch(1, 6, T0, 10, last_fetched_epoch=2, leader_epoch_end_offset=(2, 6))
    assert result.diverging_epoch is None and leader.follower(1).log_end_offset == 6


def test_find_diverging_epoch():
    assert find_diverging_epoch(3, 10, (3, 10)) is None
    assert find_diverging_epoch(3, 10, (3, 15)) is None
    assert find_diverging_epoch(3, 10, (3, 7)) == EpochEndOffset(3, 7)     # our epoch 3 ended earlier
    assert find_diverging_epoch(4, 10, (2, 12)) == EpochEndOffset(2, 12)   # we never wrote epoch 4
    with pytest.raises(OffsetOutOfRangeError):
        find_diverging_epoch(9, 10, (-1, -1))


# -- invariants -------------------------------------------------------------------------------------------------
def test_check_invariants_catches_a_broken_state():
    leader = make_leader()
    leader.check_invariants()
    leader.isr = (1, 2)
    with pytest.raises(InvariantViolation):
        leader.check_invariants()
    leader = make_leader()
    leader.high_watermark = 5
    with pytest.raises(InvariantViolation):
        leader.check_invariants()


def test_constructor_rejects_a_leader_outside_the_isr_and_a_high_watermark_beyond_the_log():
    with pytest.raises(InvariantViolation):
        make_leader(isr=(1, 2))
    with pytest.raises(InvariantViolation):
        make_leader(start=5, hw=6)
