"""Pull replication: Fetch validation, divergence and truncation, the high watermark rule, long polls."""

from __future__ import annotations

import random

import pytest
from raft_testlib import CONFIG, Harness

from cluster.core.errors import ErrorCode, InvariantViolation
from cluster.raft import (
    ElectionState,
    FetchRequest,
    FetchResponse,
    LogEntry,
    MemoryRaftLog,
    OffsetAndEpoch,
    RaftNode,
    Role,
    UnsafeFlags,
)


def fetch_replies(harness: Harness) -> list[FetchResponse]:
    return harness.take(lambda m: isinstance(m, FetchResponse))


def test_committed_entries_reach_every_state_machine_in_order():
    harness = Harness()
    harness.elect(1)
    for payload in (b"a", b"b", b"c"):
        harness.propose(1, payload)
    harness.settle()
    for node_id in (1, 2, 3):
        assert harness.payloads(node_id) == [b"a", b"b", b"c"]
        assert harness.nodes[node_id].high_watermark == 4


def test_propose_on_a_non_leader_names_the_leader():
    harness = Harness()
    harness.elect(1)
    result = harness.propose(2, b"x")
    assert (result.error_code, result.leader_id, result.epoch) == (ErrorCode.NOT_LEADER_OR_FOLLOWER, 1, 1)


def test_leader_counts_only_its_fsynced_entries_toward_the_high_watermark():
    log = MemoryRaftLog()
    node = RaftNode(1, (1,), rng=random.Random(0), config=CONFIG, persisted_state=ElectionState(), log_view=log,
                    now_ms=0)
    ready = node.poll(3000)
    assert node.role is Role.LEADER and ready.append_entries and node.high_watermark == 0
    log.append(ready.append_entries)   # the shell's fsync
    node.advance(ready)
    assert node.high_watermark == 1 and node.has_ready()


@pytest.mark.parametrize("epoch, error", [(0, ErrorCode.FENCED_LEADER_EPOCH), (2, ErrorCode.UNKNOWN_LEADER_EPOCH)])
def test_fetch_with_wrong_epoch_is_rejected(epoch, error):
    harness = Harness()
    harness.elect(1)
    harness.deliver(FetchRequest(2, 1, epoch, 0, 0, 0))
    (reply,) = fetch_replies(harness)
    assert (reply.error_code, reply.epoch, reply.leader_id, reply.entries) == (error, 1, 1, ())


def test_fetch_to_a_non_leader_says_who_leads():
    harness = Harness()
    harness.elect(1)
    harness.deliver(FetchRequest(3, 2, 1, 0, 0, 0))
    (reply,) = fetch_replies(harness)
    assert (reply.error_code, reply.leader_id) == (ErrorCode.NOT_LEADER_OR_FOLLOWER, 1)


def test_stale_epoch_response_is_ignored_by_a_follower():
    harness = Harness()
    harness.elect(1)
    before = harness.nodes[2].log_end_offset
    harness.deliver(FetchResponse(1, 2, ErrorCode.NONE, 0, 1, before, 1, 0, 0,
                                  (LogEntry(before, 0, b"old"),)))
    assert harness.nodes[2].log_end_offset == before and harness.nodes[2].epoch == 1


def diverged_harness() -> Harness:
    """Node 1 led epoch 1 and wrote two entries nobody else got; node 2 then leads epoch 2."""
    harness = Harness()
    harness.elect(1)
    harness.propose(1, b"a")
    harness.settle()
    harness.isolate(1)
    harness.propose(1, b"lost-1")
    harness.propose(1, b"lost-2")
    harness.inflight.clear()
    harness.crash(1)
    harness.heal()
    harness.forget_leader([2, 3])
    harness.elect(2)
    harness.propose(2, b"b")
    harness.settle()
    return harness


def test_follower_truncates_on_diverging_epoch_and_converges():
    harness = diverged_harness()
    assert [e.payload for e in harness.shells[1].log.read_entries(0, 4)][2:] == [b"lost-1", b"lost-2"]
    harness.start(1)
    harness.advance(CONFIG.begin_quorum_epoch_resend_ms, [2])   # the leader repeats BeginQuorumEpoch
    harness.settle()
    node1 = harness.nodes[1]
    assert node1.role is Role.FOLLOWER and node1.leader_id == 2
    assert any(r.truncate_to == 2 for r in harness.shells[1].readies)
    log1, log2 = harness.shells[1].log, harness.shells[2].log
    assert log1.read_entries(0, log1.log_end_offset) == log2.read_entries(0, log2.log_end_offset)
    assert harness.payloads(1) == [b"a", b"b"]


def test_leader_answers_a_diverging_fetch_with_its_end_offset_for_that_epoch():
    harness = diverged_harness()
    harness.deliver(FetchRequest(3, 2, 2, 4, 1, 0))      # claims offsets [2, 4) were epoch 1
    (reply,) = fetch_replies(harness)
    assert reply.diverging_epoch == OffsetAndEpoch(2, 1) and reply.entries == ()


def test_truncation_below_the_high_watermark_is_a_fatal_invariant():
    harness = Harness()
    harness.elect(1)
    harness.propose(1, b"a")
    harness.settle()
    follower = harness.nodes[2]
    assert follower.high_watermark == 2
    bad = FetchResponse(1, 2, ErrorCode.NONE, 1, 1, follower.log_end_offset, follower.last_epoch,
                        diverging_epoch=OffsetAndEpoch(1, 1))
    with pytest.raises(InvariantViolation, match="committed"):
        follower.step(bad, harness.clock[2] + 1)


def test_high_watermark_never_decreases_on_a_follower():
    harness = Harness()
    harness.elect(1)
    harness.propose(1, b"a")
    harness.settle()
    follower = harness.nodes[2]
    follower.step(FetchResponse(1, 2, ErrorCode.NONE, 1, 1, follower.log_end_offset, follower.last_epoch,
                                high_watermark=0), harness.clock[2] + 1)
    assert follower.high_watermark == 2


def test_high_watermark_never_decreases_on_the_leader_when_a_follower_truncates():
    harness = Harness()
    harness.elect(1)
    harness.propose(1, b"a")
    harness.settle()
    leader = harness.nodes[1]
    # A follower reporting a lower (restarted, behind) fetch offset moves the majority value down.
    harness.deliver(FetchRequest(2, 1, 1, 0, 0, 0))
    harness.deliver(FetchRequest(3, 1, 1, 0, 0, 0))
    assert leader.high_watermark == 2


def figure8_harness(unsafe: UnsafeFlags | None = None) -> Harness:
    """Raft paper Figure 8 for KRaft: an entry of epoch 1 sits on node 1 only; node 1 then leads epoch 3.

    Epoch 1: node 1 leads, writes 'old' at offset 1, which no follower gets.  Epoch 2: node 2 leads with
    node 3's vote; its LeaderChange reaches nobody.  Epoch 3: node 1 leads again with node 3's vote and
    appends its own LeaderChange at offset 2.
    """
    harness = Harness(unsafe=unsafe)
    harness.elect(1)
    harness.isolate(1)
    harness.propose(1, b"old")
    harness.inflight.clear()
    harness.crash(1)
    harness.heal()
    harness.forget_leader([2, 3])
    harness.campaign(2)
    harness.inflight.clear()
    harness.crash(2)
    harness.start(1)
    leader = harness.campaign(1)
    harness.inflight.clear()
    assert leader.epoch == 3
    assert [e.epoch for e in harness.shells[1].log.read_entries(0, 3)] == [1, 1, 3]
    return harness


def test_figure8_old_epoch_entry_is_not_committed_by_counting_replicas():
    harness = figure8_harness()
    leader = harness.nodes[1]
    harness.deliver(FetchRequest(3, 1, 3, 2, 1, 0))      # node 3 now holds [0, 2): 'old' is on a majority
    assert leader.high_watermark == 0                    # ... but it is not of epoch 3: nothing commits
    harness.deliver(FetchRequest(3, 1, 3, 3, 3, 0))      # our own LeaderChange (offset 2) is replicated
    assert leader.high_watermark == 3                    # and it commits everything below it


def test_figure8_unsafe_flag_commits_the_old_entry_early():
    harness = figure8_harness(UnsafeFlags(commit_old_epoch_entries=True))
    harness.deliver(FetchRequest(3, 1, 3, 2, 1, 0))
    assert harness.nodes[1].high_watermark == 2


def test_empty_fetch_is_parked_and_completed_by_a_proposal():
    harness = Harness()
    harness.elect(1)
    assert harness.inflight == []                         # both followers' fetches are parked
    harness.propose(1, b"a")
    replies = harness.take(lambda m: isinstance(m, FetchResponse))
    assert sorted(r.destination_id for r in replies) == [2, 3]
    assert all(r.entries[0].payload == b"a" for r in replies)


def test_parked_fetch_expires_with_an_empty_answer_after_max_wait():
    harness = Harness()
    harness.elect(1)
    deadline_ms = harness.shells[1].readies[-1].next_deadline_ms
    assert deadline_ms <= harness.clock[1] + CONFIG.fetch_max_wait_ms
    harness.advance(deadline_ms - 1 - harness.clock[1], [1])
    assert fetch_replies(harness) == []
    harness.advance(1, [1])
    replies = fetch_replies(harness)
    assert replies and all(r.entries == () for r in replies)


def test_duplicated_fetch_response_is_applied_once():
    harness = Harness()
    harness.elect(1)
    harness.propose(1, b"a")
    (reply,) = harness.take(lambda m: isinstance(m, FetchResponse) and m.destination_id == 2)
    harness.deliver(reply)
    harness.deliver(reply)
    assert harness.nodes[2].log_end_offset == 2


def test_observer_discovers_the_leader_replicates_and_never_counts():
    harness = Harness(voters=(1, 2, 3), observers=(4,))
    harness.elect(1)
    harness.advance(CONFIG.election_timeout_ms, [4])
    harness.settle()
    observer = harness.nodes[4]
    assert observer.role is Role.FOLLOWER and observer.leader_id == 1
    harness.crash(2)
    harness.crash(3)
    harness.propose(1, b"a")
    harness.settle()
    assert harness.nodes[1].high_watermark == 1    # leader + observer is no majority of voters
    assert observer.log_end_offset == 2
