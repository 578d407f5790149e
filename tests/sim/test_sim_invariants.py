"""The invariant checker itself: each named property fires on a history that breaks it."""

from __future__ import annotations

import dataclasses

import pytest

from cluster.raft import LogEntry, MemoryRaftLog, Role, SnapshotId
from cluster.testing.invariants import RaftInvariantChecker, SimViolation
from cluster.testing.sim_state_machine import ZERO_DIGEST, encode_snapshot, entry_digest


@dataclasses.dataclass
class FakeNode:
    """Just what the checker reads from a RaftNode."""

    role: Role
    epoch: int
    entries: list[LogEntry]
    high_watermark: int = 0
    log_start_offset: int = 0

    @property
    def log_end_offset(self) -> int:
        return len(self.entries)

    def read_entries(self, start: int, end: int) -> list[LogEntry]:
        return self.entries[start:end]

    def check_invariants(self) -> None:
        pass


def entry(offset: int, epoch: int, payload: bytes = b"x") -> LogEntry:
    return LogEntry(offset, epoch, payload)


def check(checker: RaftInvariantChecker, *nodes: FakeNode) -> None:
    checker.after_step({i + 1: n for i, n in enumerate(nodes)}, {i + 1: MemoryRaftLog() for i in range(len(nodes))})


def committed_checker(*entries: LogEntry, epoch: int = 1) -> RaftInvariantChecker:
    checker = RaftInvariantChecker()
    check(checker, FakeNode(Role.LEADER, epoch, list(entries), high_watermark=len(entries)))
    return checker


def test_two_leaders_in_one_epoch():
    checker = RaftInvariantChecker()
    check(checker, FakeNode(Role.LEADER, 3, []))
    with pytest.raises(SimViolation, match="single-leader"):
        check(checker, FakeNode(Role.FOLLOWER, 3, []), FakeNode(Role.LEADER, 3, []))


def test_same_offset_and_epoch_with_different_payloads():
    checker = RaftInvariantChecker()
    checker.on_append(1, MemoryRaftLog(), (entry(0, 1, b"a"),))
    with pytest.raises(SimViolation, match="log-matching"):
        checker.on_append(2, MemoryRaftLog(), (entry(0, 1, b"b"),))


def test_same_entry_after_different_predecessors():
    checker = RaftInvariantChecker()
    left, right = MemoryRaftLog(), MemoryRaftLog()
    left.append([entry(0, 1)])
    right.append([entry(0, 2)])
    checker.on_append(1, left, (entry(1, 3),))
    with pytest.raises(SimViolation, match="log-matching"):
        checker.on_append(2, right, (entry(1, 3),))


def test_applying_something_else_at_a_committed_offset():
    checker = committed_checker(entry(0, 1, b"a"))
    checker.on_apply(2, entry(0, 1, b"a"))
    with pytest.raises(SimViolation, match="committed-changed"):
        checker.on_apply(3, entry(0, 1, b"b"))
    with pytest.raises(SimViolation, match="hw-beyond-commit"):
        checker.on_apply(3, entry(1, 1, b"c"))


def test_snapshot_must_hold_the_committed_prefix():
    first = entry(0, 1, b"a")
    checker = committed_checker(first)
    good = encode_snapshot(1, entry_digest(ZERO_DIGEST, first))
    checker.on_snapshot(2, SnapshotId(1, 1), good, "installed")
    with pytest.raises(SimViolation, match="committed-changed"):
        checker.on_snapshot(2, SnapshotId(1, 1), encode_snapshot(1, ZERO_DIGEST), "installed")


def test_high_watermark_going_backwards_or_past_the_commit():
    checker = committed_checker(entry(0, 1), entry(1, 1))
    follower = FakeNode(Role.FOLLOWER, 1, [entry(0, 1), entry(1, 1)], high_watermark=2)
    check(checker, FakeNode(Role.LEADER, 1, follower.entries, 2), follower)
    follower.high_watermark = 1
    with pytest.raises(SimViolation, match="hw-decreased"):
        check(checker, FakeNode(Role.LEADER, 1, follower.entries, 2), follower)
    checker.on_restart(2)
    follower.high_watermark = 3
    follower.entries.append(entry(2, 1))
    with pytest.raises(SimViolation, match="hw-beyond-commit"):
        check(checker, FakeNode(Role.LEADER, 1, follower.entries[:2], 2), follower)


def test_follower_holding_a_different_entry_below_its_high_watermark():
    checker = committed_checker(entry(0, 1, b"a"))
    with pytest.raises(SimViolation, match="committed-changed"):
        check(checker, FakeNode(Role.LEADER, 1, [entry(0, 1, b"a")], 1),
              FakeNode(Role.FOLLOWER, 1, [entry(0, 1, b"z")], high_watermark=1))


def test_new_leader_missing_an_entry_committed_in_an_earlier_epoch():
    checker = committed_checker(entry(0, 1), entry(1, 1))
    with pytest.raises(SimViolation, match="leader-completeness"):
        check(checker, FakeNode(Role.FOLLOWER, 2, []), FakeNode(Role.LEADER, 2, [entry(0, 1)]))


def test_node_invariant_failures_are_reported_by_name():
    class Broken(FakeNode):
        def check_invariants(self) -> None:
            raise AssertionError("bad")
    with pytest.raises(SimViolation, match="node-invariant"):
        check(RaftInvariantChecker(), Broken(Role.FOLLOWER, 1, []))
