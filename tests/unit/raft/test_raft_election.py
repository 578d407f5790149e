"""Elections: pre-vote, real votes, the vote rules, durability before replies, restart rules."""

from __future__ import annotations

import random

import pytest
from raft_testlib import CONFIG, Harness

from cluster.core.errors import ErrorCode
from cluster.raft import (
    BeginQuorumEpochRequest,
    ElectionState,
    LogEntry,
    MemoryRaftLog,
    RaftNode,
    Role,
    VoteRequest,
    VoteResponse,
)


def lone_node(node_id=1, voters=(1, 2, 3), state=None, log=None, now_ms=0) -> RaftNode:
    return RaftNode(node_id, voters, rng=random.Random(1), config=CONFIG, persisted_state=state or ElectionState(),
                    log_view=log or MemoryRaftLog(), now_ms=now_ms)


def log_with_epochs(*epochs: int) -> MemoryRaftLog:
    log = MemoryRaftLog()
    log.append([LogEntry(offset, epoch, b"x%d" % offset) for offset, epoch in enumerate(epochs)])
    return log


def vote_replies(ready) -> list[VoteResponse]:
    return [m for m in ready.outbox if isinstance(m, VoteResponse)]


def test_single_voter_elects_itself_and_commits():
    harness = Harness(voters=(1,))
    leader = harness.elect(1)
    assert leader.epoch == 1
    harness.propose(1, b"a")
    assert harness.payloads(1) == [b"a"]
    assert leader.high_watermark == 2   # LeaderChange + a


def test_three_voters_elect_exactly_one_leader_and_followers_learn_it():
    harness = Harness()
    harness.elect(2)
    assert harness.leader_ids() == [2]
    for node_id in (1, 3):
        assert harness.nodes[node_id].role is Role.FOLLOWER
        assert harness.nodes[node_id].leader_id == 2
        assert harness.shells[node_id].state.epoch == 1 and harness.shells[node_id].state.leader_id == 2


def test_timeout_starts_prevote_without_changing_or_persisting_the_epoch():
    node = lone_node()
    ready = node.poll(2 * CONFIG.election_timeout_ms)
    assert node.role is Role.PROSPECTIVE and node.epoch == 0
    assert ready.persist_election_state is None
    requests = [m for m in ready.outbox if isinstance(m, VoteRequest)]
    assert {m.destination_id for m in requests} == {2, 3}
    assert all(m.pre_vote and m.candidate_epoch == 1 for m in requests)


def test_prevote_majority_makes_candidate_with_durable_self_vote_before_real_vote_requests():
    node = lone_node()
    node.advance(node.poll(2000))
    node.step(VoteResponse(2, 1, ErrorCode.NONE, 0, None, True, 1, True), 2001)
    ready = node.poll(2001)
    assert node.role is Role.CANDIDATE and node.epoch == 1
    assert ready.persist_election_state == ElectionState(1, 1, None)
    assert all(not m.pre_vote for m in ready.outbox if isinstance(m, VoteRequest))


def test_vote_is_persisted_in_the_same_ready_that_carries_the_grant():
    node = lone_node(node_id=2)
    node.step(VoteRequest(1, 2, 1, 0, 0, False), 10)
    ready = node.poll(10)
    assert ready.persist_election_state == ElectionState(1, 1, None)
    assert [r.vote_granted for r in vote_replies(ready)] == [True]
    # ready.py: the shell persists before it sends; a Ready that grants must always carry the vote.
    assert ready.needs_persist()


def test_vote_not_granted_to_candidate_with_shorter_log():
    node = lone_node(node_id=2, log=log_with_epochs(1, 1, 1), state=ElectionState(1, None, None))
    node.step(VoteRequest(1, 2, 2, 1, 2, False), 10)   # same last epoch, LEO 2 < our 3
    replies = vote_replies(node.poll(10))
    assert [r.vote_granted for r in replies] == [False]
    assert node.epoch == 2 and node.role is Role.UNATTACHED   # the epoch still moved (durably)


def test_vote_not_granted_to_candidate_with_older_last_epoch_even_if_longer():
    node = lone_node(node_id=2, log=log_with_epochs(1, 2), state=ElectionState(2, None, None))
    node.step(VoteRequest(1, 2, 3, 1, 10, False), 10)
    assert [r.vote_granted for r in vote_replies(node.poll(10))] == [False]


def test_vote_granted_to_candidate_with_longer_log_of_same_epoch():
    node = lone_node(node_id=2, log=log_with_epochs(1, 1), state=ElectionState(1, None, None))
    node.step(VoteRequest(1, 2, 2, 1, 3, False), 10)
    ready = node.poll(10)
    assert [r.vote_granted for r in vote_replies(ready)] == [True]
    assert node.role is Role.VOTED and ready.persist_election_state == ElectionState(2, 1, None)


def test_stale_epoch_vote_request_is_rejected_with_fenced_leader_epoch():
    node = lone_node(node_id=2, state=ElectionState(5, None, None))
    node.step(VoteRequest(1, 2, 4, 0, 0, False), 10)
    reply = vote_replies(node.poll(10))[0]
    assert (reply.vote_granted, reply.error_code, reply.epoch) == (False, ErrorCode.FENCED_LEADER_EPOCH, 5)
    assert node.epoch == 5


def test_one_vote_per_epoch_but_the_same_candidate_may_ask_again():
    node = lone_node(node_id=2)
    node.step(VoteRequest(1, 2, 1, 0, 0, False), 10)
    node.step(VoteRequest(3, 2, 1, 0, 0, False), 11)
    node.step(VoteRequest(1, 2, 1, 0, 0, False), 12)
    replies = vote_replies(node.poll(12))
    assert [(r.destination_id, r.vote_granted) for r in replies] == [(1, True), (3, False), (1, True)]


def test_invalid_vote_requests_are_refused_with_an_error():
    node = lone_node(node_id=2)
    node.step(VoteRequest(1, 2, 1, 1, 0, False), 10)     # last epoch must be below the candidate epoch
    node.step(VoteRequest(9, 2, 1, 0, 0, False), 11)     # not a voter
    replies = vote_replies(node.poll(11))
    assert [r.error_code for r in replies] == [ErrorCode.INVALID_REQUEST, ErrorCode.INCONSISTENT_VOTER_SET]
    assert node.epoch == 0


def test_prevote_grant_changes_nothing_and_is_not_persisted():
    node = lone_node(node_id=2, state=ElectionState(3, None, None))
    node.step(VoteRequest(1, 2, 4, 0, 0, True), 10)
    ready = node.poll(10)
    assert [r.vote_granted for r in vote_replies(ready)] == [True]
    assert ready.persist_election_state is None and node.epoch == 3 and node.role is Role.UNATTACHED


def test_follower_that_fetches_from_its_leader_refuses_prevotes_and_leader_refuses_too():
    harness = Harness()
    harness.elect(1)
    harness.deliver(VoteRequest(2, 3, 2, 1, 1, True))
    harness.deliver(VoteRequest(2, 1, 2, 1, 1, True))
    replies = harness.take(lambda m: isinstance(m, VoteResponse))
    assert sorted((r.source_id, r.vote_granted) for r in replies) == [(1, False), (3, False)]


def candidate_at_2001() -> RaftNode:
    node = lone_node()
    node.advance(node.poll(2000))
    node.step(VoteResponse(2, 1, ErrorCode.NONE, 0, None, True, 1, True), 2001)
    node.advance(node.poll(2001))
    assert node.role is Role.CANDIDATE
    return node


def test_candidate_rejected_by_a_majority_backs_off_briefly_then_prevotes_again():
    node = candidate_at_2001()
    node.step(VoteResponse(2, 1, ErrorCode.NONE, 1, None, False, 1, False), 2002)
    node.step(VoteResponse(3, 1, ErrorCode.NONE, 1, None, False, 1, False), 2003)
    node.advance(node.poll(2003 + CONFIG.retry_backoff_ms))   # first backoff is within [0, 2 x base)
    assert node.role is Role.PROSPECTIVE and node.epoch == 1
    waiting = candidate_at_2001()                              # no answers: waits its election timeout
    waiting.advance(waiting.poll(2003 + CONFIG.retry_backoff_ms))
    assert waiting.role is Role.CANDIDATE


def test_restart_after_leading_comes_back_resigned_and_refuses_votes_in_that_epoch():
    harness = Harness()
    harness.elect(1)
    harness.crash(1)
    node = harness.start(1)
    assert node.role is Role.RESIGNED and node.epoch == 1
    node.step(VoteRequest(2, 1, 1, 1, 5, False), harness.clock[1] + 1)
    assert [r.vote_granted for r in vote_replies(node.poll(harness.clock[1] + 1))] == [False]


def test_restart_keeps_the_vote():
    harness = Harness()
    harness.deliver(VoteRequest(1, 2, 1, 0, 0, False))
    assert [m.vote_granted for m in harness.take()] == [True]
    harness.crash(2)
    node2 = harness.start(2)
    assert (node2.role, node2.epoch, node2.voted_id) == (Role.VOTED, 1, 1)
    harness.deliver(VoteRequest(3, 2, 1, 0, 0, False))
    assert [m.vote_granted for m in harness.take()] == [False]


def test_log_with_newer_epoch_than_quorum_state_starts_unattached_at_that_epoch():
    node = lone_node(node_id=2, log=log_with_epochs(1, 4), state=ElectionState(2, 3, None))
    assert (node.role, node.epoch, node.voted_id) == (Role.UNATTACHED, 4, None)
    assert node.poll(0).persist_election_state == ElectionState(4, None, None)


def test_begin_quorum_epoch_makes_a_candidate_of_the_same_epoch_follow():
    node = lone_node()
    node.advance(node.poll(2000))
    node.step(VoteResponse(2, 1, ErrorCode.NONE, 0, None, True, 1, True), 2001)
    node.advance(node.poll(2001))
    node.step(BeginQuorumEpochRequest(3, 1, 1), 2002)
    assert (node.role, node.leader_id, node.epoch) == (Role.FOLLOWER, 3, 1)


def test_prevote_keeps_a_partitioned_node_from_disrupting_a_stable_leader_on_rejoin():
    harness = Harness()
    harness.elect(1)
    harness.propose(1, b"a")
    harness.settle()
    harness.isolate(3)
    # Node 3 hears nothing for many timeouts; it keeps pre-voting but never bumps its epoch.
    for _ in range(10):
        harness.advance(harness.max_fetch_timeout_ms, [3])
        harness.inflight = [m for m in harness.inflight if m.source_id != 3]
    assert harness.nodes[3].epoch == 1
    harness.heal()
    for _ in range(2 * harness.max_timer_ms):            # its next pre-vote reaches the others
        harness.advance(1, [3])
        if harness.nodes[3].role is Role.PROSPECTIVE:
            break
    assert any(isinstance(m, VoteRequest) and m.pre_vote and m.source_id == 3 for m in harness.inflight)
    harness.settle()
    assert harness.leader_ids() == [1] and harness.nodes[1].epoch == 1
    assert harness.nodes[3].role in (Role.FOLLOWER, Role.PROSPECTIVE)
    harness.advance(CONFIG.election_timeout_ms * 2, [3])
    harness.settle()
    assert harness.nodes[3].leader_id == 1 and harness.nodes[3].role is Role.FOLLOWER
    assert harness.payloads(3) == [b"a"]


@pytest.mark.parametrize("voters", [(1, 2, 3), (1, 2, 3, 4, 5)])
def test_any_voter_can_win_when_it_times_out_first(voters):
    for node_id in voters:
        harness = Harness(voters=voters)
        harness.elect(node_id)
        assert harness.leader_ids() == [node_id]
