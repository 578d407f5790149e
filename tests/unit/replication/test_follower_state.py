"""Unit tests of FollowerFetchState: fetch positions, appends, epoch-based truncation, error handling."""

from __future__ import annotations

import pytest

from cluster.core.errors import ErrorCode, InvariantViolation
from cluster.replication.follower import (
    FetchAction,
    FollowerFetchState,
    FollowerStatus,
    TruncationBelowHighWatermarkError,
    truncation_offset,
)
from cluster.replication.leader import EpochEndOffset, find_diverging_epoch


class ListLog:
    """A log modelled as the leader epoch of each offset, with a durable prefix (the ReplicaLogView)."""

    def __init__(self, epochs=(), durable=None):
        self.epochs = list(epochs)
        self.durable = len(self.epochs) if durable is None else durable
        self.log_start_offset = 0

    @property
    def log_end_offset(self):
        return len(self.epochs)

    @property
    def durable_log_end_offset(self):
        return self.durable

    @property
    def latest_epoch(self):
        return self.epochs[-1] if self.epochs else -1

    def end_offset_for_epoch(self, leader_epoch):
        """Kafka's LeaderEpochFileCache.endOffsetFor over the epochs of this list."""
        starts = [(e, i) for i, e in enumerate(self.epochs) if i == 0 or self.epochs[i - 1] != e]
        if leader_epoch == -1 or not starts:
            return -1, -1
        if leader_epoch == starts[-1][0]:
            return leader_epoch, self.log_end_offset
        higher = [s for s in starts if s[0] > leader_epoch]
        if not higher:
            return -1, -1
        lower = [s for s in starts if s[0] <= leader_epoch]
        if not lower:
            return leader_epoch, higher[0][1]
        return lower[-1][0], higher[0][1]

    def append(self, epochs):
        self.epochs.extend(epochs)

    def flush(self):
        self.durable = len(self.epochs)

    def truncate_to(self, offset):
        del self.epochs[offset:]
        self.durable = min(self.durable, offset)


def make_follower(hw=0, leader_epoch=5):
    return FollowerFetchState("topic-id", 0, 2, 1, leader_epoch, high_watermark=hw, fetch_backoff_ms=100)


def test_list_log_epoch_lookup_matches_kafka_semantics():
    log = ListLog([0, 0, 2, 2, 2, 4])
    assert log.end_offset_for_epoch(4) == (4, 6)
    assert log.end_offset_for_epoch(3) == (2, 5)
    assert log.end_offset_for_epoch(1) == (0, 2)
    assert log.end_offset_for_epoch(7) == (-1, -1)
    assert ListLog([3, 3]).end_offset_for_epoch(1) == (1, 0)


def test_fetch_position_is_the_fsynced_log_end_and_last_epoch():
    follower = make_follower()
    log = ListLog([1, 1, 3], durable=2)
    assert follower.next_fetch(0, log) is None   # unflushed tail: the offset would overstate what we hold
    log.flush()
    request = follower.next_fetch(0, log)
    assert (request.fetch_offset, request.last_fetched_epoch, request.current_leader_epoch) == (3, 3, 5)
    assert follower.next_fetch(0, log) is None   # one fetch in flight


def test_append_then_high_watermark_is_min_of_leader_hw_and_local_end():
    follower = make_follower()
    log = ListLog()
    request = follower.next_fetch(0, log)
    outcome = follower.on_fetch_response(request, 1, log, high_watermark=7)
    assert outcome.action is FetchAction.APPEND
    assert follower.next_fetch(1, log) is None   # the append is not finished
    log.append([5] * 4)
    assert follower.on_records_appended(log) == 4
    assert follower.next_fetch(1, log) is None   # flush first
    log.flush()
    request = follower.next_fetch(1, log)
    follower.on_fetch_response(request, 2, log, high_watermark=4)
    log.append([5] * 6)
    assert follower.on_records_appended(log) == 4
    log.flush()
    request = follower.next_fetch(2, log)
    follower.on_fetch_response(request, 3, log, high_watermark=2)  # a new leader's older HW
    assert follower.on_records_appended(log) == 4                  # never moves back


def test_truncate_to_the_leader_end_of_a_shared_epoch():
    follower = make_follower(hw=2)
    log = ListLog([1, 1, 1, 3, 3, 3])              # epoch 3 from offset 3; the new leader ended epoch 3 at 4
    request = follower.next_fetch(0, log)
    outcome = follower.on_fetch_response(request, 1, log, diverging_epoch=EpochEndOffset(3, 4))
    assert (outcome.action, outcome.offset) == (FetchAction.TRUNCATE, 4)


def test_kip_279_truncates_iteratively_when_the_leader_never_saw_our_epoch():
    leader_log = ListLog([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 4, 4])   # epochs 0 @0, 1 @5, 4 @12
    log = ListLog([0] * 10 + [2] * 10)                                   # epochs 0 @0, 2 @10
    follower = make_follower(hw=5)
    rounds = 0
    while True:
        request = follower.next_fetch(rounds, log)
        diverging = find_diverging_epoch(request.last_fetched_epoch, request.fetch_offset,
                                         leader_log.end_offset_for_epoch(request.last_fetched_epoch))
        outcome = follower.on_fetch_response(request, rounds, log, diverging_epoch=diverging)
        if outcome.action is FetchAction.APPEND:
            break
        assert outcome.action is FetchAction.TRUNCATE
        log.truncate_to(outcome.offset)
        rounds += 1
    assert rounds == 2                      # first to the end of our epoch 0 (10), then to the leader's (5)
    assert log.epochs == leader_log.epochs[:5]


def test_truncation_below_the_high_watermark_is_fatal():
    follower = make_follower(hw=5)
    log = ListLog([1] * 8)
    request = follower.next_fetch(0, log)
    with pytest.raises(TruncationBelowHighWatermarkError):
        follower.on_fetch_response(request, 1, log, diverging_epoch=EpochEndOffset(1, 3))
    assert issubclass(TruncationBelowHighWatermarkError, InvariantViolation)


def test_truncation_offset_never_exceeds_the_local_log_end():
    assert truncation_offset(EpochEndOffset(2, 50), ListLog([2, 2, 2])) == 3
    assert truncation_offset(EpochEndOffset(0, 1), ListLog()) == 0


def test_fenced_leader_epoch_waits_for_metadata():
    follower = make_follower()
    log = ListLog()
    request = follower.next_fetch(0, log)
    outcome = follower.on_fetch_response(request, 1, log, error_code=ErrorCode.FENCED_LEADER_EPOCH)
    assert outcome.action is FetchAction.AWAIT_METADATA and follower.status is FollowerStatus.AWAITING_METADATA
    assert follower.next_fetch(10_000, log) is None
    assert not follower.on_leader_change(1, 5, 10_000)   # same epoch: nothing new
    assert follower.on_leader_change(1, 6, 10_000)       # epoch bump, same leader (KAFKA-7164)
    request = follower.next_fetch(10_000, log)
    assert request is not None and request.current_leader_epoch == 6


@pytest.mark.parametrize("error", [ErrorCode.UNKNOWN_LEADER_EPOCH, ErrorCode.NOT_LEADER_OR_FOLLOWER,
                                   ErrorCode.UNKNOWN_TOPIC_OR_PARTITION])
def test_retriable_errors_back_off(error):
    follower = make_follower()
    log = ListLog()
    request = follower.next_fetch(0, log)
    outcome = follower.on_fetch_response(request, 1000, log, error_code=error)
    assert outcome.action is FetchAction.BACKOFF and outcome.offset == 1100
    assert follower.next_fetch(1099, log) is None
    assert follower.next_fetch(1100, log) is not None


def test_failed_request_backs_off_and_stale_responses_are_ignored():
    follower = make_follower()
    log = ListLog()
    first = follower.next_fetch(0, log)
    follower.on_fetch_failed(first, 50)
    assert follower.next_fetch(100, log) is None
    second = follower.next_fetch(150, log)
    assert second is not None
    assert follower.on_fetch_response(first, 160, log, high_watermark=3).action is FetchAction.IGNORE
    assert follower.in_flight is second
    follower.on_leader_change(3, 9, 170)
    assert follower.on_fetch_response(second, 180, log).action is FetchAction.IGNORE


def test_offset_out_of_range_below_the_leader_log_start_resets_the_log():
    follower = make_follower()
    log = ListLog([1, 1])
    request = follower.next_fetch(0, log)
    outcome = follower.on_fetch_response(request, 1, log, error_code=ErrorCode.OFFSET_OUT_OF_RANGE,
                                         log_start_offset=10)
    assert (outcome.action, outcome.offset) == (FetchAction.RESET, 10)
    assert follower.high_watermark == 10


def test_follower_cannot_follow_itself():
    with pytest.raises(InvariantViolation):
        FollowerFetchState("t", 0, 1, 1, 0)
