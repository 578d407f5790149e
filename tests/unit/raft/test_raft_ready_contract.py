"""The poll/advance contract and the node's own input checks."""

from __future__ import annotations

import random

import pytest
from raft_testlib import CONFIG

from cluster.core.errors import InvariantViolation
from cluster.raft import ElectionState, MemoryRaftLog, RaftConfig, RaftNode, Role, VoteRequest


def node(voters=(1, 2, 3), log=None) -> RaftNode:
    return RaftNode(1, voters, rng=random.Random(0), config=CONFIG, persisted_state=ElectionState(),
                    log_view=log or MemoryRaftLog(), now_ms=100)


def test_no_input_between_poll_and_advance():
    raft = node()
    ready = raft.poll(100)
    with pytest.raises(InvariantViolation):
        raft.step(VoteRequest(2, 1, 1, 0, 0, True), 101)
    with pytest.raises(InvariantViolation):
        raft.poll(101)
    raft.advance(ready)
    raft.poll(101)


def test_advance_needs_the_ready_from_the_last_poll():
    raft = node()
    first = raft.poll(100)
    raft.advance(first)
    raft.poll(101)
    with pytest.raises(InvariantViolation):
        raft.advance(first)


def test_time_must_not_go_backwards():
    raft = node()
    with pytest.raises(InvariantViolation):
        raft.poll(99)


def test_message_for_another_node_is_a_bug():
    with pytest.raises(InvariantViolation):
        node().step(VoteRequest(2, 3, 1, 0, 0, True), 100)


def test_next_deadline_is_the_election_timeout_window():
    ready = node().poll(100)
    assert 100 + CONFIG.election_timeout_ms <= ready.next_deadline_ms < 100 + 2 * CONFIG.election_timeout_ms
    assert ready.role is Role.UNATTACHED and ready.outbox == ()


def test_shell_that_skips_the_log_writes_is_caught_at_advance():
    log = MemoryRaftLog()
    raft = RaftNode(1, (1,), rng=random.Random(0), config=CONFIG, persisted_state=ElectionState(), log_view=log,
                    now_ms=0)
    ready = raft.poll(5000)
    assert raft.role is Role.LEADER and ready.append_entries
    with pytest.raises(InvariantViolation):
        raft.advance(ready)


def test_observer_never_campaigns():
    raft = RaftNode(4, (1, 2, 3), rng=random.Random(0), config=CONFIG, persisted_state=ElectionState(),
                    log_view=MemoryRaftLog(), now_ms=0, observers=(4,))
    for now in (0, 5000, 10000):
        ready = raft.poll(now)
        raft.advance(ready)
        assert raft.role is Role.UNATTACHED
        assert all(not isinstance(m, VoteRequest) for m in ready.outbox)


@pytest.mark.parametrize("changes", [
    {"fetch_timeout_ms": 900}, {"request_timeout_ms": 400}, {"election_timeout_ms": 0},
    {"snapshot_chunk_bytes": 0}, {"election_backoff_max_ms": 1}])
def test_config_rejects_inconsistent_values(changes):
    with pytest.raises(InvariantViolation):
        RaftConfig(**changes)


def test_config_derived_timeouts():
    assert CONFIG.check_quorum_timeout_ms == 3000 and CONFIG.begin_quorum_epoch_resend_ms == 1000


def test_public_exports():
    import cluster.raft as raft
    assert set(raft.__all__) == {name for name in dir(raft) if not name.startswith("_")} - {
        "config", "log", "messages", "node", "quorum", "ready", "state"}
