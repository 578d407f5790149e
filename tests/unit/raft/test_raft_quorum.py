"""Quorum arithmetic: majorities, the majority-replicated offset, the log comparison, backoffs."""

from __future__ import annotations

import random

import pytest

from cluster.raft import quorum


@pytest.mark.parametrize("voters, majority", [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3)])
def test_majority_size(voters, majority):
    assert quorum.majority_size(voters) == majority


@pytest.mark.parametrize("offsets, expected", [
    ([7], 7), ([9, 3, 5], 5), ([9, 9, 0], 9), ([10, 8, 6, 4, 2], 6), ([5, 0, 0, 0, 5], 0), ([4, 4, 4, 0, 0], 4)])
def test_majority_end_offset(offsets, expected):
    assert quorum.majority_end_offset(offsets) == expected


def test_log_comparison_is_epoch_first():
    assert quorum.is_log_up_to_date(3, 1, 2, 100)
    assert not quorum.is_log_up_to_date(2, 100, 3, 1)
    assert quorum.is_log_up_to_date(2, 5, 2, 5)
    assert not quorum.is_log_up_to_date(2, 4, 2, 5)


def test_election_lost_once_a_majority_is_out_of_reach():
    assert not quorum.election_lost(1, 3)
    assert quorum.election_lost(2, 3)
    assert not quorum.election_lost(2, 5)
    assert quorum.election_lost(3, 5)


def test_random_election_timeout_is_in_t_to_2t():
    rng = random.Random(3)
    values = {quorum.random_election_timeout_ms(rng, 1000) for _ in range(500)}
    assert min(values) >= 1000 and max(values) < 2000 and len(values) > 100


def test_jittered_fetch_timeout_is_in_t_to_t_plus_a_quarter_and_below_check_quorum():
    rng = random.Random(4)
    values = {quorum.jittered_fetch_timeout_ms(rng, 2000) for _ in range(2000)}
    assert min(values) == 2000 and max(values) == 2500 and len(values) > 300
    # A follower must give up on its leader before that leader's check-quorum (1.5 x T) would have it resign.
    assert max(values) < 2000 * 3 // 2


def test_binary_exponential_backoff_grows_and_is_capped():
    rng = random.Random(5)
    first = {quorum.binary_exponential_backoff_ms(rng, 1, 20, 1000) for _ in range(200)}
    assert first <= {0, 20}
    late = [quorum.binary_exponential_backoff_ms(rng, 12, 20, 1000) for _ in range(200)]
    assert max(late) == 1000 and min(late) >= 0


def test_end_epoch_backoff_by_rank():
    successors = (4, 2, 7, 9)
    assert [quorum.end_epoch_backoff_ms(successors, n, 20, 1000) for n in successors] == [0, 20, 40, 80]
    assert quorum.end_epoch_backoff_ms(successors, 5, 20, 1000) is None
