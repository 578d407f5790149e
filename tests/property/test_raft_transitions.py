"""Property tests of the role table and of whole clusters under Hypothesis-chosen (shrinkable) schedules.

The transition property covers every (state, input) pair of the table.  The schedule property lets
Hypothesis pick, step by step, which message to deliver or drop, whose clock to move, where to propose and
whom to crash; after every action the simulator's invariant checker runs.  When it fails, Hypothesis shrinks
the schedule to a short one, which complements the seeded simulator (fast, but failing seeds are long).
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster.raft import TRANSITIONS, IllegalTransition, RaftConfig, Role, check_transition
from cluster.raft.config import UnsafeFlags
from cluster.raft.messages import RaftMessage
from cluster.raft.ready import Proposed
from cluster.testing.invariants import RaftInvariantChecker
from cluster.testing.sim_disk import SimDisk
from cluster.testing.sim_node import SimNode

roles = st.sampled_from(list(Role))
epochs = st.integers(min_value=0, max_value=6)


@given(roles, roles, epochs, epochs)
def test_check_transition_accepts_exactly_the_table(from_role, to_role, from_epoch, to_epoch):
    rule = TRANSITIONS.get((from_role, to_role))
    legal = rule is not None and rule.allows(from_epoch, to_epoch)
    try:
        check_transition(from_role, to_role, from_epoch, to_epoch)
        accepted = True
    except IllegalTransition:
        accepted = False
    assert accepted == legal


CONFIG = RaftConfig(fetch_max_entries=2, snapshot_interval_entries=5, snapshot_chunk_bytes=16)
VOTERS = (1, 2, 3)
ACTION_NAMES = ("next", "next", "next", "next", "next", "any", "drop", "wait", "wait", "sleep", "propose", "propose",
                "crash", "restart")
actions = st.lists(st.tuples(st.sampled_from(ACTION_NAMES), st.integers(0, 30), st.integers(1, 3)), min_size=80, max_size=250)


class Driver:
    """Three SimNodes whose every scheduling choice comes from Hypothesis.

    Each node has its own clock (timeouts are local decisions), so Hypothesis can expire one node's timer
    without expiring everyone's.
    """

    def __init__(self) -> None:
        self.disks = {i: SimDisk() for i in VOTERS}
        self.nodes: dict[int, SimNode | None] = {}
        self.clock = dict.fromkeys(VOTERS, 0)
        self.inflight: list[RaftMessage] = []
        self.checker = RaftInvariantChecker()
        self.rng = random.Random(7)
        for node_id in VOTERS:
            self.restart(node_id)

    def restart(self, node_id: int) -> None:
        if self.nodes.get(node_id) is not None:
            return
        self.checker.on_restart(node_id)
        self.nodes[node_id] = SimNode(node_id, VOTERS, (), self.disks[node_id], random.Random(node_id), CONFIG,
                                      UnsafeFlags(), self.clock[node_id])
        self.process(node_id)

    def process(self, node_id: int) -> None:
        self.nodes[node_id].process(self.clock[node_id], self.inflight.append, self.checker, None)

    def act(self, action: str, index: int, node_id: int) -> None:
        """One scheduling decision; ``index`` picks a message or a duration, ``node_id`` a node."""
        if action in ("next", "any", "drop"):
            self.route(action, index)
        elif action in ("wait", "sleep"):
            self.clock[node_id] += index * (20 if action == "wait" else 200)
            if self.nodes[node_id] is not None:
                self.process(node_id)
        elif action == "propose":
            self.propose(node_id)
        elif action == "crash" and self.nodes[node_id] is not None:
            self.nodes[node_id] = None
            self.disks[node_id].crash(self.rng)
        elif action == "restart":
            self.restart(node_id)
        live = {i: n.raft for i, n in self.nodes.items() if n is not None}
        self.checker.after_step(live, {i: self.disks[i].log for i in live})

    def route(self, action: str, index: int) -> None:
        if not self.inflight:
            return
        message = self.inflight.pop(0 if action == "next" else index % len(self.inflight))
        target = self.nodes[message.destination_id]
        if action != "drop" and target is not None:
            self.clock[message.destination_id] += 1
            target.raft.step(message, self.clock[message.destination_id])
            self.process(message.destination_id)

    def propose(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node is None:
            return
        self.clock[node_id] += 1
        result = node.raft.propose(b"p%d" % self.clock[node_id], self.clock[node_id])
        assert isinstance(result, Proposed) == (node.raft.role is Role.LEADER)
        self.process(node_id)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions)
def test_any_schedule_keeps_every_safety_invariant(schedule):
    driver = Driver()
    for action, index, node_id in schedule:
        driver.act(action, index, node_id)


def test_the_schedule_driver_can_elect_and_commit():
    """Guards the property above against vacuity: a plain schedule through ``act`` elects and commits."""
    driver = Driver()
    schedule = [("sleep", 10, 1)] + [("next", 0, 1)] * 40 + [("propose", 0, 1)] + [("next", 0, 1)] * 40
    for action, index, node_id in schedule:
        driver.act(action, index, node_id)
    assert driver.nodes[1].raft.role is Role.LEADER
    assert driver.checker.committed_end >= 2
