"""Election timing after a leader dies: the jittered fetch timeout and the split-vote backoff (issue 3).

With a fixed fetch timeout the followers of a dead leader campaign in the same millisecond, split the vote
and each wait a whole election timeout before retrying (3-4 s at Kafka's defaults).  These tests pin down
the two measures in the core: the fetch timer is drawn from ``[T, T + T // 4]`` on every re-arm, and a
candidate that meets a competing candidate of its own epoch retries after a short randomized backoff.
"""

from __future__ import annotations

import random

from raft_testlib import CONFIG, Harness

from cluster.core.errors import ErrorCode
from cluster.raft import ElectionState, FetchResponse, MemoryRaftLog, RaftNode, Role, VoteRequest

MAX_FETCH_TIMEOUT_MS = CONFIG.fetch_timeout_ms + CONFIG.fetch_timeout_ms // 4


def follower_of_2(seed: int) -> RaftNode:
    """Node 1 restarted as a follower of node 2 in epoch 1 at t=0 (its fetch timer is armed at once)."""
    return RaftNode(1, (1, 2, 3), rng=random.Random(seed), config=CONFIG, persisted_state=ElectionState(1, None, 2),
                    log_view=MemoryRaftLog(), now_ms=0)


def fetch_timeout_fires_at(node: RaftNode, start_ms: int) -> int:
    """Polls once a millisecond from ``start_ms`` until the fetch timer makes the node campaign."""
    for now_ms in range(start_ms, start_ms + 2 * MAX_FETCH_TIMEOUT_MS):
        node.advance(node.poll(now_ms))
        if node.role is Role.PROSPECTIVE:
            return now_ms
    raise AssertionError(f"the fetch timer never fired: {node.role}")


def test_fetch_timeout_is_jittered_by_up_to_a_quarter():
    fired = [fetch_timeout_fires_at(follower_of_2(seed), 0) for seed in range(40)]
    assert all(CONFIG.fetch_timeout_ms <= t <= MAX_FETCH_TIMEOUT_MS for t in fired), fired
    assert len(set(fired)) > 20, fired    # really spread out, not one fixed value


def test_every_answered_fetch_rearms_the_timer_with_a_fresh_draw():
    fired = []
    for seed in range(20):
        node = follower_of_2(seed)
        node.advance(node.poll(0))
        node.step(FetchResponse(2, 1, ErrorCode.NONE, 1, 2, 0, 0), 1000)   # answers the initial Fetch
        node.advance(node.poll(1000))
        # Had the timer not been re-armed it would fire by MAX_FETCH_TIMEOUT_MS; it fires T..T+T/4 after 1000.
        fired.append(fetch_timeout_fires_at(node, 1001) - 1000)
    assert all(CONFIG.fetch_timeout_ms <= t <= MAX_FETCH_TIMEOUT_MS for t in fired), fired
    assert len(set(fired)) > 10, fired


def ms_until_one_leader(harness: Harness, node_ids: list[int], limit_ms: int) -> int:
    """Ticks the clocks of ``node_ids`` together, delivering everything, until one of them leads."""
    for elapsed_ms in range(1, limit_ms + 1):
        harness.advance(1, node_ids)
        harness.settle()
        if harness.leader_ids():
            assert len(harness.leader_ids()) == 1, harness.leader_ids()
            return elapsed_ms
    raise AssertionError(f"no leader within {limit_ms} ms: {[harness.nodes[i].role for i in node_ids]}")


def split_vote_after_leader_crash(seed: int) -> Harness:
    """Node 1 led and crashed; nodes 2 and 3 time out in the same step and both run in epoch 2."""
    harness = Harness(seed=seed)
    harness.elect(1)
    harness.settle()
    harness.crash(1)
    harness.advance(harness.max_fetch_timeout_ms, [2, 3])    # both pre-vote in the same step
    harness.settle()
    assert [(n.role, n.epoch) for n in (harness.nodes[2], harness.nodes[3])] == [(Role.CANDIDATE, 2)] * 2
    return harness


def test_candidates_that_split_the_vote_retry_after_a_short_backoff_not_a_whole_election_timeout():
    for seed in range(20):
        harness = split_vote_after_leader_crash(seed)
        # Without the split-vote backoff the first retry comes a whole election timeout (>= 1 s) later.
        ms_until_one_leader(harness, [2, 3], CONFIG.election_timeout_ms // 4)
        leaders = harness.leader_ids()
        other = ({2, 3} - set(leaders)).pop()
        assert harness.nodes[other].role is Role.FOLLOWER and harness.nodes[other].leader_id == leaders[0]


def test_a_competing_candidate_does_not_cut_a_round_that_can_still_be_won_short_of_the_backoff():
    # Five voters: node 1 meets candidate 2 of its own epoch, yet the votes of 3 and 4 still make it leader.
    harness = Harness(voters=(1, 2, 3, 4, 5))
    node = harness.nodes[1]
    harness.advance(harness.max_timer_ms, [1])
    harness.deliver_where(lambda m: isinstance(m, VoteRequest) and m.pre_vote and m.destination_id in (3, 4))
    harness.deliver_where(lambda m: m.destination_id == 1)                 # two pre-votes: candidate in epoch 1
    assert (node.role, node.epoch) == (Role.CANDIDATE, 1)
    harness.deliver(VoteRequest(2, 1, 1, 0, 0, False))                     # the competitor's request
    harness.deliver_where(lambda m: not m.pre_vote and m.destination_id in (3, 4))
    harness.deliver_where(lambda m: m.destination_id == 1)
    assert node.role is Role.LEADER and node.epoch == 1


def test_a_leader_crash_elects_a_successor_within_3_s_at_default_timeouts():
    worst_ms = 0
    for seed in range(12):
        harness = Harness(seed=seed)
        harness.elect(1)
        harness.settle()
        harness.crash(1)
        # Fetch timeout (at most 2.5 s with jitter) plus a few message hops, or a short split-vote backoff.
        worst_ms = max(worst_ms, ms_until_one_leader(harness, [2, 3], 2999))
    assert worst_ms >= CONFIG.fetch_timeout_ms, worst_ms     # nobody campaigns before the fetch timeout
