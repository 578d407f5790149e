"""Check-quorum resignation and graceful resignation with preferred successors (EndQuorumEpoch)."""

from __future__ import annotations

from raft_testlib import CONFIG, Harness

from cluster.raft import EndQuorumEpochRequest, Role, VoteRequest


def test_leader_without_majority_contact_resigns_by_check_quorum():
    harness = Harness()
    harness.elect(1)
    harness.isolate(1)
    harness.advance(CONFIG.check_quorum_timeout_ms - 1, [1])
    assert harness.nodes[1].role is Role.LEADER
    harness.advance(1, [1])
    leader = harness.nodes[1]
    assert leader.role is Role.RESIGNED and leader.epoch == 1
    ends = harness.take(lambda m: isinstance(m, EndQuorumEpochRequest))
    assert sorted(m.destination_id for m in ends) == [2, 3]
    assert harness.propose(1, b"x").leader_id is None


def test_leader_that_keeps_hearing_fetches_from_a_majority_stays():
    harness = Harness()
    harness.elect(1)
    harness.crash(3)
    for _ in range(10):                          # node 2 keeps fetching (long polls), node 3 is gone
        harness.advance(CONFIG.fetch_max_wait_ms, [1])
        harness.settle()
    assert harness.nodes[1].role is Role.LEADER


def test_majority_side_elects_a_new_leader_after_the_old_one_is_cut_off():
    harness = Harness()
    harness.elect(1)
    harness.propose(1, b"a")
    harness.settle()
    harness.isolate(1)
    harness.advance(CONFIG.check_quorum_timeout_ms, [1])
    harness.forget_leader([3])
    harness.elect(2)
    assert harness.nodes[2].epoch == 2
    harness.propose(2, b"b")
    harness.settle()
    assert harness.payloads(3) == [b"a", b"b"]


def test_graceful_resignation_hands_leadership_to_the_most_caught_up_voter():
    harness = Harness(voters=(1, 2, 3, 4, 5))
    harness.elect(1)
    harness.crash(5)
    harness.cut |= {(1, 4), (4, 1)}              # node 4 falls behind
    harness.propose(1, b"a")
    harness.settle()
    harness.heal()
    harness.clock[1] += 1
    assert harness.nodes[1].resign(harness.clock[1])
    harness.pump(1)
    ends = harness.take(lambda m: isinstance(m, EndQuorumEpochRequest))
    successors = ends[0].preferred_successors
    assert set(successors[:2]) == {2, 3} and successors[2:] == (4, 5)
    for message in ends:
        harness.deliver(message)
    first = successors[0]
    harness.advance(0, [first])                  # the first successor's backoff is 0 ms
    harness.settle()
    assert harness.leader_ids() == [first] and harness.nodes[first].epoch == 2
    assert harness.nodes[first].log_end_offset >= 3


def test_resign_is_refused_when_not_leader():
    harness = Harness()
    harness.elect(1)
    assert harness.nodes[2].resign(harness.clock[2] + 1) is False


# -- shutdown: a stopping member resigns and then never campaigns, votes or leads ---------------------------------------
def _begin_shutdown(harness: Harness, node_id: int) -> None:
    harness.clock[node_id] += 1
    harness.nodes[node_id].begin_shutdown(harness.clock[node_id])
    harness.pump(node_id)


def test_leader_that_begins_shutdown_resigns_and_the_others_elect_without_it():
    harness = Harness()
    harness.elect(1)
    _begin_shutdown(harness, 1)
    assert harness.nodes[1].role is Role.RESIGNED
    harness.settle()
    for _ in range(6):
        harness.advance(harness.max_timer_ms)
        harness.settle()
    leaders = harness.leader_ids()
    assert len(leaders) == 1 and leaders[0] in (2, 3)
    assert harness.nodes[1].role is not Role.LEADER


def test_stopping_member_never_campaigns_even_without_a_leader():
    harness = Harness()
    harness.elect(1)
    harness.crash(2)
    harness.crash(3)
    _begin_shutdown(harness, 1)
    epoch = harness.nodes[1].epoch
    for _ in range(10):
        harness.advance(harness.max_timer_ms, [1])
        assert not harness.take(lambda m: isinstance(m, VoteRequest) and m.source_id == 1)
    assert harness.nodes[1].epoch == epoch and harness.nodes[1].role is Role.RESIGNED


def test_stopping_member_refuses_votes_so_a_lone_survivor_cannot_lead():
    harness = Harness()
    harness.elect(1)
    harness.crash(1)
    _begin_shutdown(harness, 2)
    for _ in range(6):
        harness.advance(harness.max_timer_ms, [2, 3])
        harness.settle()
    assert harness.leader_ids() == []
    assert harness.nodes[2].voted_id in (None, 1) and harness.nodes[2].role is not Role.LEADER
