"""``SimCluster``: a seeded discrete-event simulation of a KRaft quorum under faults.

Why: a Raft bug is a rare interleaving.  Running thousands of randomized but *reproducible* schedules per
minute, with every safety property checked after every event, finds them (the method of TigerBeetle's VOPR
and Kafka's ``RaftEventSimulationTest``).  Everything -- fault profile, timeouts, delays, which node crashes
and when -- derives from one seed, so a failing seed replays exactly.

The run has two phases:
  1. chaos, for ``steps`` events: client proposals, message drop/duplication/delay/reordering, symmetric and
     one-way partitions, node crashes (also in the middle of carrying out a Ready, losing unsynced writes)
     and restarts, graceful resignations.
  2. liveness: every partition heals, every node restarts, the network becomes reliable, and within
     ``liveness_bound_ms`` of simulated time a leader must exist and a new proposal must be committed and
     applied by every node.
An event is one message delivery, one timer firing, one fault or one proposal; the invariant checker
(invariants.py) runs after each.  Time is simulated milliseconds (``now_ms``); nothing here sleeps.
"""

from __future__ import annotations

import dataclasses
import enum
import heapq
import random
import traceback

from cluster.core.errors import InvariantViolation
from cluster.raft.config import RaftConfig, UnsafeFlags
from cluster.raft.messages import RaftMessage
from cluster.raft.ready import Proposed
from cluster.raft.state import Role
from cluster.testing.faults import FaultProfile
from cluster.testing.invariants import RaftInvariantChecker, SimViolation
from cluster.testing.sim_disk import SimDisk
from cluster.testing.sim_network import RELIABLE, SimNetwork
from cluster.testing.sim_node import CrashPoint, NodeCrashed, SimNode

LIVENESS_TICK_MS = 100
NO_UNSAFE_FLAGS = UnsafeFlags()


class Event(enum.IntEnum):
    DELIVER = 0
    TIMER = 1
    PROPOSE = 2
    CRASH = 3
    RESTART = 4
    PARTITION = 5
    HEAL = 6
    RESIGN = 7
    LIVENESS = 8


@dataclasses.dataclass(frozen=True, slots=True)
class SimResult:
    seed: int
    steps: int
    sim_time_ms: int
    violation: SimViolation | None
    traceback_text: str
    leaders_elected: int
    committed_entries: int
    crashes: int
    partitions: int
    messages_sent: int

    @property
    def ok(self) -> bool:
        return self.violation is None


def sim_config(rng: random.Random) -> RaftConfig:
    """Kafka's timeouts, with small batches and snapshots so that every code path runs in a short run."""
    return RaftConfig(
        fetch_max_entries=rng.choice((1, 4, 32)),
        snapshot_interval_entries=rng.choice((6, 25, 100_000)),
        snapshot_chunk_bytes=rng.choice((16, 30, 4096)),
        max_committed_entries_per_ready=rng.choice((3, 64)))


class SimCluster:
    """N voters (and optional observers) on simulated disks and network; see the module docstring."""

    def __init__(self, seed: int, *, voters: int = 3, observers: int = 0, unsafe: UnsafeFlags = NO_UNSAFE_FLAGS,
                 profile: FaultProfile | None = None, config: RaftConfig | None = None,
                 liveness_bound_ms: int = 30_000) -> None:
        self.seed = seed
        master = random.Random(seed)
        self._rng = random.Random(master.getrandbits(64))          # faults and client choices
        self._node_rng = random.Random(master.getrandbits(64))     # seeds for each node incarnation
        self.profile = profile or FaultProfile.random(master)
        self.config = config or sim_config(master)
        self.network = SimNetwork(random.Random(master.getrandbits(64)), self.profile.network)
        self.unsafe = unsafe
        self.liveness_bound_ms = liveness_bound_ms
        self.voter_ids = tuple(range(1, voters + 1))
        self.observer_ids = tuple(range(voters + 1, voters + observers + 1))
        self.all_ids = self.voter_ids + self.observer_ids
        self.disks = {node_id: SimDisk() for node_id in self.all_ids}
        self.nodes: dict[int, SimNode | None] = dict.fromkeys(self.all_ids)
        self.checker = RaftInvariantChecker()
        self.now_ms = 0
        self.steps = 0
        self.crashes = 0
        self.partitions = 0
        self._queue: list[tuple[int, int, Event, object]] = []
        self._sequence = 0
        self._timer_at: dict[int, int | None] = dict.fromkeys(self.all_ids)
        self._incarnation = dict.fromkeys(self.all_ids, 0)
        self._proposal_counter = 0
        self._healing = False
        self._marker: tuple[Proposed, bytes] | None = None
        self._live = False

    # == running ==================================================================================================
    def run(self, steps: int) -> SimResult:
        violation, trace = None, ""
        try:
            self._start()
            self._run_chaos(steps)
            self._run_liveness()
        except SimViolation as error:
            violation, trace = error, traceback.format_exc()
        except InvariantViolation as error:
            violation, trace = SimViolation("node-invariant", str(error)), traceback.format_exc()
        except Exception as error:  # noqa: BLE001 - any crash of the code under test is a finding
            violation, trace = SimViolation("exception", repr(error)), traceback.format_exc()
        return SimResult(self.seed, self.steps, self.now_ms, violation, trace,
                         self.checker.leaders_elected, self.checker.committed_end, self.crashes,
                         self.partitions, self.network.sent)

    def _start(self) -> None:
        for node_id in self.all_ids:
            self._boot(node_id)
        profile = self.profile
        for event, rate in ((Event.PROPOSE, profile.proposal_rate_per_s), (Event.CRASH, profile.crash_rate_per_s),
                            (Event.PARTITION, profile.partition_rate_per_s), (Event.RESIGN, profile.resign_rate_per_s)):
            self._schedule_recurring(event, rate)

    def _run_chaos(self, steps: int) -> None:
        while self.steps < steps and self._queue:
            self._next_event()

    def _run_liveness(self) -> None:
        self._healing = True
        self.network.heal_all()
        self.network.faults = RELIABLE
        for node_id in self.all_ids:
            if self.nodes[node_id] is None:
                self._boot(node_id)
        deadline_ms = self.now_ms + self.liveness_bound_ms
        self._push(self.now_ms, Event.LIVENESS, None)
        while not self._live:
            if not self._queue or self._queue[0][0] > deadline_ms:
                raise SimViolation("liveness", f"no commit on every node within {self.liveness_bound_ms} ms of "
                                               f"healing (leader: {self._leader_summary()})")
            self._next_event()

    def _next_event(self) -> None:
        time_ms, _sequence, event, payload = heapq.heappop(self._queue)
        self.now_ms = max(self.now_ms, time_ms)
        if self._handle(event, payload, time_ms):
            self.steps += 1
            self._check()

    def _check(self) -> None:
        nodes = {node_id: node.raft for node_id, node in self.nodes.items() if node is not None}
        logs = {node_id: self.disks[node_id].log for node_id in nodes}
        self.checker.after_step(nodes, logs)

    # == events ===================================================================================================
    def _handle(self, event: Event, payload: object, time_ms: int) -> bool:
        """Carries out one event; False if it turned out to be a no-op (stale timer, dead destination)."""
        if event is Event.DELIVER:
            return self._deliver(payload)
        if event is Event.TIMER:
            return self._fire_timer(payload, time_ms)
        if event is Event.RESTART:
            return self._restart(payload)
        if event is Event.HEAL:
            self.network.heal(payload)
            return True
        if event is Event.LIVENESS:
            return self._liveness_tick()
        if self._healing:
            return False   # no new faults or random writes once healing started
        self._schedule_recurring(event, self._rate_of(event))
        return self._chaos_event(event)

    def _chaos_event(self, event: Event) -> bool:
        if event is Event.PROPOSE:
            return self._propose_random()
        if event is Event.CRASH:
            return self._crash_random()
        if event is Event.PARTITION:
            return self._partition_random()
        return self._resign_leader()

    def _deliver(self, message: RaftMessage) -> bool:
        node = self.nodes[message.destination_id]
        if node is None or not self.network.link_up(message.source_id, message.destination_id):
            return False
        node.raft.step(message, self.now_ms)
        self._process(message.destination_id)
        return True

    def _fire_timer(self, payload: tuple[int, int], time_ms: int) -> bool:
        node_id, incarnation = payload
        if incarnation != self._incarnation[node_id] or self._timer_at[node_id] != time_ms:
            return False
        self._timer_at[node_id] = None
        self._process(node_id)
        return True

    # == nodes ====================================================================================================
    def _boot(self, node_id: int) -> None:
        rng = random.Random(self._node_rng.getrandbits(64))
        self.checker.on_restart(node_id)
        self.nodes[node_id] = SimNode(node_id, self.voter_ids, self.observer_ids, self.disks[node_id], rng,
                                      self.config, self.unsafe, self.now_ms)
        self._process(node_id)

    def _process(self, node_id: int) -> None:
        node = self.nodes[node_id]
        crash_at = None
        if not self._healing and self._rng.random() < self.profile.crash_in_ready_probability:
            crash_at = self._rng.choice(tuple(CrashPoint))
        try:
            deadline_ms = node.process(self.now_ms, self._send, self.checker, crash_at)
        except NodeCrashed:
            self._crash(node_id)
            return
        if (not self._healing and node.raft.role is Role.VOTED
                and self._rng.random() < self.profile.crash_after_vote_probability):
            self._crash(node_id)
            return
        if self._timer_at[node_id] != deadline_ms:
            self._timer_at[node_id] = deadline_ms
            self._push(deadline_ms, Event.TIMER, (node_id, self._incarnation[node_id]))

    def _send(self, message: RaftMessage) -> None:
        for time_ms in self.network.send(message, self.now_ms):
            self._push(time_ms, Event.DELIVER, message)

    def _crash(self, node_id: int) -> None:
        self.nodes[node_id] = None
        self.disks[node_id].crash(self._rng)
        self._incarnation[node_id] += 1
        self._timer_at[node_id] = None
        self.crashes += 1
        low, high = self.profile.restart_delay_ms
        self._push(self.now_ms + self._rng.randint(low, high), Event.RESTART, node_id)

    def _restart(self, node_id: int) -> bool:
        if self.nodes[node_id] is not None:
            return False
        self._boot(node_id)
        return True

    # == chaos ====================================================================================================
    def _propose_random(self) -> bool:
        live = [node for node in self.nodes.values() if node is not None]
        if not live:
            return False
        leaders = [node for node in live if node.raft.role is Role.LEADER]
        node = self._rng.choice(leaders if leaders and self._rng.random() < 0.9 else live)
        self._proposal_counter += 1
        node.raft.propose(b"v%d" % self._proposal_counter, self.now_ms)
        self._process(node.node_id)
        return True

    def _crash_random(self) -> bool:
        live = [node_id for node_id, node in self.nodes.items() if node is not None]
        if not live:
            return False
        self._crash(self._rng.choice(live))
        return True

    def _partition_random(self) -> bool:
        rng, ids = self._rng, list(self.all_ids)
        if len(ids) < 2:
            return False   # nothing to cut
        kind = rng.choice(("isolate", "one-way", "split"))
        if kind == "isolate":
            victim = rng.choice(ids)
            partition_id = self.network.partition({victim}, set(ids) - {victim})
        elif kind == "one-way":
            source = rng.choice(ids)
            targets = set(rng.sample([i for i in ids if i != source], rng.randint(1, len(ids) - 1)))
            partition_id = self.network.partition({source}, targets, one_way=True)
        else:
            rng.shuffle(ids)
            cut = rng.randint(1, len(ids) - 1)
            partition_id = self.network.partition(set(ids[:cut]), set(ids[cut:]))
        self.partitions += 1
        low, high = self.profile.partition_duration_ms
        self._push(self.now_ms + rng.randint(low, high), Event.HEAL, partition_id)
        return True

    def _resign_leader(self) -> bool:
        for node in self.nodes.values():
            if node is not None and node.raft.role is Role.LEADER:
                node.raft.resign(self.now_ms)
                self._process(node.node_id)
                return True
        return False

    # == liveness =================================================================================================
    def _liveness_tick(self) -> bool:
        self._push(self.now_ms + LIVENESS_TICK_MS, Event.LIVENESS, None)
        if self._marker is not None and self._marker_applied_everywhere():
            self._live = True
            return True
        leader = self._current_leader()
        if leader is not None and (self._marker is None or self._marker[0].epoch != leader.raft.epoch):
            payload = b"liveness-%d" % self.now_ms
            result = leader.raft.propose(payload, self.now_ms)
            if isinstance(result, Proposed):
                self._marker = (result, payload)
            self._process(leader.node_id)
        return True

    def _marker_applied_everywhere(self) -> bool:
        proposed, payload = self._marker
        if self.checker.committed_payload(proposed.offset) != payload:
            return False
        return all(node is not None and node.state_machine.next_offset > proposed.offset
                   for node in self.nodes.values())

    def _current_leader(self) -> SimNode | None:
        leaders = [node for node in self.nodes.values() if node is not None and node.raft.role is Role.LEADER]
        return max(leaders, key=lambda node: node.raft.epoch) if leaders else None

    def _leader_summary(self) -> str:
        leader = self._current_leader()
        return "none" if leader is None else f"node {leader.node_id} epoch {leader.raft.epoch}"

    # == scheduling ===============================================================================================
    def _push(self, time_ms: int, event: Event, payload: object) -> None:
        self._sequence += 1
        heapq.heappush(self._queue, (time_ms, self._sequence, event, payload))

    def _rate_of(self, event: Event) -> float:
        profile = self.profile
        return {Event.PROPOSE: profile.proposal_rate_per_s, Event.CRASH: profile.crash_rate_per_s,
                Event.PARTITION: profile.partition_rate_per_s, Event.RESIGN: profile.resign_rate_per_s}[event]

    def _schedule_recurring(self, event: Event, rate_per_s: float) -> None:
        if rate_per_s > 0:
            self._push(self.now_ms + 1 + int(self._rng.expovariate(rate_per_s) * 1000), event, None)
