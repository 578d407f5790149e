"""One simulated node: a ``RaftNode``, its ``SimDisk`` and its state machine, and the shell loop between them.

Why: this is the simulator's stand-in for the real asyncio shell, and it follows the ``Ready`` contract to
the letter (ready.py): persist and fsync, then send, then apply, then snapshot, then ``advance``.  It can be
told to crash at any point *inside* that sequence (``CrashPoint``), which is where durability bugs hide:
after writing but before fsync (the writes may be lost), after fsync but before sending, halfway through the
outbox, or after applying.  Every write and apply is reported to the invariant checker first.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable

from cluster.core.errors import invariant
from cluster.raft.config import RaftConfig, UnsafeFlags
from cluster.raft.messages import RaftMessage
from cluster.raft.node import RaftNode
from cluster.raft.ready import Ready
from cluster.testing.invariants import RaftInvariantChecker
from cluster.testing.sim_disk import SimDisk
from cluster.testing.sim_state_machine import SimStateMachine

# A node that keeps producing Readies without a new input is in a loop: a bug.
_MAX_READY_ROUNDS = 100_000


class CrashPoint(enum.Enum):
    BEFORE_FSYNC = "before-fsync"
    BEFORE_SEND = "before-send"
    MID_SEND = "mid-send"
    BEFORE_ADVANCE = "before-advance"


class NodeCrashed(Exception):
    """Raised out of ``SimNode.process`` when an injected crash point was reached."""


class SimNode:
    """A running incarnation of one node (a restart builds a new ``SimNode`` over the same disk)."""

    def __init__(self, node_id: int, voters: tuple[int, ...], observers: tuple[int, ...], disk: SimDisk,
                 rng: random.Random, config: RaftConfig, unsafe: UnsafeFlags, now_ms: int) -> None:
        self.node_id = node_id
        self.disk = disk
        self.state_machine = SimStateMachine()
        self.raft = RaftNode(node_id, voters, rng=rng, config=config, persisted_state=disk.election_state,
                             log_view=disk.log, now_ms=now_ms, observers=observers, unsafe=unsafe)

    def process(self, now_ms: int, send: Callable[[RaftMessage], None], checker: RaftInvariantChecker,
                crash_at: CrashPoint | None) -> int:
        """Runs poll/carry-out/advance until the node has nothing left to do; returns the next deadline."""
        raft = self.raft
        for _ in range(_MAX_READY_ROUNDS):
            ready = raft.poll(now_ms)
            self._carry_out(ready, send, checker, crash_at)
            raft.advance(ready)
            if not raft.has_ready():
                return ready.next_deadline_ms
        invariant(False, f"node {self.node_id} produced {_MAX_READY_ROUNDS} Readies without new input")
        return now_ms

    def _carry_out(self, ready: Ready, send: Callable[[RaftMessage], None], checker: RaftInvariantChecker,
                   crash_at: CrashPoint | None) -> None:
        disk = self.disk
        # A leader's HW may have moved during the steps before this poll; record it before anything that
        # reveals it (a message, an apply) can happen, even if we crash halfway.
        checker.before_ready(self.node_id, self.raft)
        if ready.needs_persist():
            self._write(ready, checker)
            if crash_at is CrashPoint.BEFORE_FSYNC:
                raise NodeCrashed()
            disk.fsync()
        if crash_at is CrashPoint.BEFORE_SEND and ready.outbox:
            raise NodeCrashed()
        for index, message in enumerate(ready.outbox):
            if crash_at is CrashPoint.MID_SEND and index == len(ready.outbox) // 2 and index > 0:
                raise NodeCrashed()
            send(message)
        self._apply(ready, checker)
        if crash_at is CrashPoint.BEFORE_ADVANCE and (ready.committed_entries or ready.create_snapshot):
            raise NodeCrashed()
        if ready.create_snapshot is not None:
            data = self.state_machine.snapshot()
            checker.on_snapshot(self.node_id, ready.create_snapshot, data, "created")
            disk.compact_to_snapshot(ready.create_snapshot, data)
            disk.fsync()

    def _write(self, ready: Ready, checker: RaftInvariantChecker) -> None:
        disk = self.disk
        if ready.persist_election_state is not None:
            disk.write_election_state(ready.persist_election_state)
        if ready.install_snapshot is not None:
            install = ready.install_snapshot
            checker.on_snapshot(self.node_id, install.snapshot_id, install.data, "installed")
            disk.install_snapshot(install.snapshot_id, install.data)
        if ready.truncate_to is not None:
            disk.truncate_to(ready.truncate_to)
        if ready.append_entries:
            checker.on_append(self.node_id, disk.log, ready.append_entries)
            disk.append(ready.append_entries)

    def _apply(self, ready: Ready, checker: RaftInvariantChecker) -> None:
        state_machine = self.state_machine
        if ready.load_snapshot is not None:
            data = self.disk.log.snapshot_data()
            invariant(self.disk.log.latest_snapshot_id() == ready.load_snapshot, "snapshot to load is not on disk")
            checker.on_snapshot(self.node_id, ready.load_snapshot, data, "loaded")
            state_machine.load_snapshot(data)
        for entry in ready.committed_entries:
            checker.on_apply(self.node_id, entry)
            state_machine.apply(entry)
