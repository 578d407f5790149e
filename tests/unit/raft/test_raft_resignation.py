"""Check-quorum resignation and graceful resignation with preferred successors (EndQuorumEpoch)."""

from __future__ import annotations

from raft_testlib import CONFIG, Harness

from cluster.raft import EndQuorumEpochRequest, Role


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
