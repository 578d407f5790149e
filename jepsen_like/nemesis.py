"""A seeded, saved, replayable fault schedule and the thread that applies it.

Jepsen pairs every fault with its healing op (flip-flop) and staggers them at random gaps; here the whole
schedule is drawn up front from `--seed`, written to schedule.json, and can be replayed with
`--schedule`, so a failing run's faults can be repeated exactly (the client interleaving cannot).

Faults: kill (-9, then restart), pause (SIGSTOP, then SIGCONT) and partition (a grudge applied inside the
nodes' network namespaces, then healed).  Partition specs, as in Jepsen's nemesis/combined.clj: `one`
(isolate one node), `halves` (two random halves), `leader` (isolate the metadata quorum leader: the only
target resolved at run time, and recorded in the history), `one-way` (one node drops another's packets).
`majorities-ring` (every node sees a majority, no two the same majority; needs 3 nodes).
Further kinds (faults.py does the work): `clock` (bump-clock: a fixed offset of +-11 ms..290 s as Jepsen
draws it, or strobe-clock: flipping between an offset and 0 every 100 ms..1 s; healed by reset-clock),
`disk` (disk-full: the node's tmpfs data dir filled to the last byte; disk-heal), `lose-unfsynced`
(kill -9 with the broker's power-loss hook on, so the restart drops every unfsynced byte; then start),
`delay` (inbound packets of a node held 50 +- 10 ms; stop-delay) and `loss` (20 % of a node's inbound
packets dropped; stop-loss).
Role faults target whoever holds a role when the fault starts (resolved at run time, recorded in the history):
`pause-controller` / `kill-controller` hit the active controller (the metadata quorum leader), `pause-leader` /
`kill-leader` the leader of one partition of the test topic (drawn from the seed; its leader read from Metadata),
`pause-both` both at once (a partition led by another node when there is one).  They last `role_fault_s`
(default 10-15 s), longer than broker.session.timeout.ms (9 s), because the production incident needed exactly
that: a controller gone long enough for every broker's session to lapse, so partitions change leaders while
producers still have batches in flight.
The first faults of a schedule cycle through the enabled kinds, so even a short smoke run sees each one.
"""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

FAULTS = {"kill": ("kill", "start"), "pause": ("pause", "resume"),
          "partition": ("start-partition", "stop-partition"),
          "clock": ("bump-clock", "reset-clock"),     # or strobe-clock, drawn per event
          "disk": ("disk-full", "disk-heal"),
          "lose-unfsynced": ("kill-lose-unfsynced", "start"),
          "delay": ("start-delay", "stop-delay"),
          "loss": ("start-loss", "stop-loss"),
          "pause-controller": ("pause", "resume"), "kill-controller": ("kill", "start"),
          "pause-leader": ("pause", "resume"), "kill-leader": ("kill", "start"),
          "pause-both": ("pause", "resume")}
# role fault -> whom it targets: the active controller, a partition leader of the test topic, or both
ROLE_TARGETS = {"pause-controller": "controller", "kill-controller": "controller", "pause-leader": "leader",
                "kill-leader": "leader", "pause-both": "both"}
ROLE_FAULT_S = (10.0, 15.0)     # longer than the default broker.session.timeout.ms (9 s)
PARTITION_SPECS = ("one", "halves", "leader", "one-way", "majorities-ring")
NETWORK_KINDS = ("partition", "delay", "loss")    # need network namespaces
# start op -> (kind, its healing op), for the plots and the fault counts
OPENERS = {"kill": "kill", "pause": "pause", "start-partition": "partition", "bump-clock": "clock",
           "strobe-clock": "clock", "disk-full": "disk", "kill-lose-unfsynced": "lose-unfsynced",
           "start-delay": "delay", "start-loss": "loss"}
CLOSERS = {"start": ("kill", "lose-unfsynced"), "resume": ("pause",), "stop-partition": ("partition",),
           "reset-clock": ("clock",), "disk-heal": ("disk",), "stop-delay": ("delay",), "stop-loss": ("loss",)}


def majorities_ring(nodes: list[str], rng: random.Random) -> dict:
    """Jepsen's majorities-ring: nodes on a shuffled ring, each hears the ring neighbours that make up a
    bare majority with itself (both sides alternately) and drops the rest, so every node sees a majority
    and no two see the same one."""
    ring = nodes[:]
    rng.shuffle(ring)
    n = len(ring)
    others = n // 2    # a majority is others + itself
    grudge = {}
    for i, node in enumerate(ring):
        heard = {ring[(i + d) % n] for d in range(1, (others + 1) // 2 + 1)}
        heard |= {ring[(i - d) % n] for d in range(1, others // 2 + 1)}
        grudge[node] = sorted(set(ring) - heard - {node})
    return grudge


def grudge_for(spec: str, nodes: list[str], rng: random.Random, target: str | None = None) -> dict:
    """{node: [nodes it drops packets from]} for a partition spec (`leader` needs `target`)."""
    if spec in ("one", "leader"):
        victim = target if target is not None else rng.choice(nodes)
        others = [n for n in nodes if n != victim]
        return {victim: others, **{n: [victim] for n in others}}
    if spec == "halves":
        shuffled = nodes[:]
        rng.shuffle(shuffled)
        half = len(shuffled) // 2
        a, b = shuffled[:half], shuffled[half:]
        return {**{n: sorted(b) for n in a}, **{n: sorted(a) for n in b}}
    if spec == "one-way":
        src, dst = rng.sample(nodes, 2)
        return {dst: [src]}
    if spec == "majorities-ring":
        return majorities_ring(nodes, rng)
    raise ValueError(f"unknown partition spec {spec!r}")


def build_schedule(seed: int, nemeses: list[str], time_limit_s: float, interval_s: float,
                   nodes: list[str], *, role_fault_s: tuple[float, float] = ROLE_FAULT_S,
                   topic_partitions: int = 1) -> dict:
    rng = random.Random(f"{seed}/nemesis")
    events: list[dict] = []
    kinds = [n for n in nemeses if n in FAULTS]
    if "partition" in kinds and len(nodes) < 2:
        kinds.remove("partition")
    first_round = rng.sample(kinds, len(kinds))
    specs = [s for s in PARTITION_SPECS if s != "majorities-ring" or len(nodes) >= 3]
    rng.shuffle(specs)
    if kinds:
        # The first fault comes early so that even a short smoke run sees one.
        t = rng.uniform(1.0, max(1.0, min(interval_s, time_limit_s / 4)))
        while t < time_limit_s - 1.0:
            kind = first_round.pop(0) if first_round else rng.choice(kinds)
            duration = rng.uniform(1.0, 4.0)
            start_f, stop_f = FAULTS[kind]
            if kind in ROLE_TARGETS:
                duration = rng.uniform(*role_fault_s)
                start, stop = role_events(kind, len(events) // 2, rng, topic_partitions)
                start = {"at_s": round(t, 3), **start}
            elif kind == "partition":
                spec = specs.pop(0) if specs else rng.choice([s for s in PARTITION_SPECS
                                                              if s != "majorities-ring" or len(nodes) >= 3])
                start = {"at_s": round(t, 3), "f": start_f, "spec": spec,
                         "grudge": None if spec == "leader" else grudge_for(spec, nodes, rng)}
                stop = {"f": stop_f}
            elif kind in ("clock", "delay", "loss"):
                node = rng.choice(nodes)
                start = {"at_s": round(t, 3), "f": start_f, "node": node, **fault_params(kind, rng)}
                start["f"] = start.pop("op", start_f)
                stop = {"f": stop_f, "node": node}
            else:
                node = rng.choice(nodes)
                start, stop = {"at_s": round(t, 3), "f": start_f, "node": node}, {"f": stop_f, "node": node}
            events.append(start)
            events.append({"at_s": round(min(t + duration, time_limit_s), 3), **stop})
            t += duration + rng.uniform(0.5, 2 * interval_s)
    return {"seed": seed, "nemeses": nemeses, "nodes": nodes, "time_limit_s": time_limit_s, "events": events}


def role_events(kind: str, pair: int, rng: random.Random, topic_partitions: int) -> tuple[dict, dict]:
    """The start and stop events of a role fault; `pair` ties the stop to the nodes the start resolved."""
    start_f, stop_f = FAULTS[kind]
    target = ROLE_TARGETS[kind]
    start = {"f": start_f, "target": target, "pair": pair}
    if target in ("leader", "both"):
        start["partition"] = rng.randrange(topic_partitions)
    return start, {"f": stop_f, "target": target, "pair": pair}


def fault_params(kind: str, rng: random.Random) -> dict:
    """The drawn magnitude of a clock, delay or loss fault (Jepsen's nemesis/time.clj and packet ranges)."""
    if kind == "clock":
        delta_ms = int(1.5 ** (6 + 25 * rng.random())) * rng.choice((-1, 1))   # ~11 ms .. ~290 s
        if rng.random() < 0.5:
            return {"op": "bump-clock", "delta_ms": delta_ms}
        return {"op": "strobe-clock", "delta_ms": delta_ms, "period_ms": rng.randint(100, 1000)}
    if kind == "delay":
        return {"delay_ms": 50, "jitter_ms": 10}
    return {"percent": 20}


def partition_leader(leaders: dict[int, str], partition: int, avoid: str | None = None) -> str | None:
    """The leader of `partition`, or (for pause-both) of the first partition from it on led by a node other than
    `avoid`, so both roles are hit on different nodes when the cluster allows."""
    if not leaders:
        return None
    count = max(leaders) + 1
    for step in range(count):
        leader = leaders.get((partition + step) % count)
        if leader is not None and leader != avoid:
            return leader
    return leaders.get(partition)


def load_schedule(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def fault_windows(history) -> list[dict]:
    """[{kind, label, start_s, end_s}] from the nemesis ops of a history (for the plots)."""
    open_: dict[tuple, tuple] = {}
    windows = []
    end_s = max((op.time_ns for op in history), default=0) / 1e9
    for op in history:
        if op.process != "nemesis" or not isinstance(op.value, dict) or not op.value.get("done"):
            continue
        key_node = op.value.get("node")
        if op.f in OPENERS:
            kind = OPENERS[op.f]
            label = f"{kind} {key_node or op.value.get('spec', '')}".strip()
            open_[(kind, key_node if kind != "partition" else None)] = (op.time_ns / 1e9, label)
        elif op.f in CLOSERS:
            for kind in CLOSERS[op.f]:
                start = open_.pop((kind, key_node if kind != "partition" else None), None)
                if start:
                    windows.append({"kind": kind, "label": start[1], "start_s": start[0],
                                    "end_s": op.time_ns / 1e9, "node": key_node})
    for (kind, node), (start_s, label) in open_.items():
        windows.append({"kind": kind, "label": label, "start_s": start_s, "end_s": end_s, "node": node})
    return windows


class NemesisThread(threading.Thread):
    """Applies the schedule's events at their times; each one recorded as two nemesis `info` ops
    (before and after), as Jepsen does.  `cluster` is a cluster_control.Cluster (or anything with
    `nodes`, `leader()`, `partition()`, `heal_network()`)."""

    def __init__(self, schedule: dict, cluster, recorder, t0: float, stop_event: threading.Event,
                 topic: str | None = None) -> None:
        super().__init__(name="nemesis", daemon=True)
        self.schedule, self.cluster, self.recorder = schedule, cluster, recorder
        self.t0, self.stop_event = t0, stop_event
        self.topic = topic                      # whose partition leaders the role faults target
        self.error: BaseException | None = None
        self.applied: list[dict] = []
        self.resolved: dict[int, list[str]] = {}   # role fault pair -> the nodes its start hit
        # Finding a role holder takes time (seconds on a loaded machine); later events shift by it, so every
        # fault still lasts as long as the schedule drew.
        self.lag_s = 0.0

    def run(self) -> None:
        try:
            for event in self.schedule["events"]:
                delay = self.t0 + event["at_s"] + self.lag_s - time.monotonic()
                if delay > 0 and self.stop_event.wait(delay):
                    return
                self.apply(event)
        except BaseException as exc:  # surfaced by the harness as a harness error
            self.error = exc

    def apply(self, event: dict) -> None:
        if event["f"] in ("start-partition", "stop-partition"):
            self.apply_partition(event)
            return
        if "target" in event and "node" not in event:
            self.apply_role(event)
            return
        f, name = event["f"], event["node"]
        node = self.cluster.nodes[name]
        value = {k: v for k, v in event.items() if k not in ("at_s", "f")}
        self.recorder.record("nemesis", "info", f, value)
        result = self.ACTIONS[f](self, node, event)
        self.recorder.record("nemesis", "info", f, {**value, "done": True, **(result or {})})
        self.applied.append(event)

    def _disk_full(self, node, event):
        node.exit_excused = True          # a broker may rightly stop on ENOSPC; healing restarts it
        return {"ballast_bytes": self.cluster.disk.fill(event["node"])}

    def _disk_heal(self, node, event):
        self.cluster.disk.heal(event["node"])
        node.heal()
        node.exit_excused = False
        return None

    ACTIONS = {
        "kill": lambda self, node, e: node.kill9(),
        "kill-lose-unfsynced": lambda self, node, e: node.kill9(),   # the hook is on: restart drops unsynced
        "start": lambda self, node, e: node.start(),
        "pause": lambda self, node, e: node.pause(),
        "resume": lambda self, node, e: node.resume(),
        "bump-clock": lambda self, node, e: self.cluster.clock.bump(e["node"], e["delta_ms"]),
        "strobe-clock": lambda self, node, e: self.cluster.clock.strobe(e["node"], e["delta_ms"], e["period_ms"]),
        "reset-clock": lambda self, node, e: self.cluster.clock.reset(e["node"]),
        "disk-full": _disk_full,
        "disk-heal": _disk_heal,
        "start-delay": lambda self, node, e: self.cluster.packets.start_delay(e["node"], e["delay_ms"],
                                                                              e["jitter_ms"]),
        "stop-delay": lambda self, node, e: self.cluster.packets.stop_delay(e["node"]),
        "start-loss": lambda self, node, e: self.cluster.packets.start_loss(e["node"], e["percent"]),
        "stop-loss": lambda self, node, e: self.cluster.packets.stop_loss(e["node"]),
    }

    def apply_partition(self, event: dict) -> None:
        if event["f"] == "stop-partition":
            self.recorder.record("nemesis", "info", "stop-partition", {})
            self.cluster.heal_network()
            self.recorder.record("nemesis", "info", "stop-partition", {"done": True})
            self.applied.append(event)
            return
        grudge = event.get("grudge")
        value = {"spec": event["spec"]}
        if grudge is None:   # isolate the leader: who leads is only known now
            leader = self.cluster.leader()
            value["leader"] = leader
            grudge = grudge_for("one", list(self.cluster.nodes), random.Random(0), target=leader) if leader else {}
        value["grudge"] = grudge
        self.recorder.record("nemesis", "info", "start-partition", value)
        self.cluster.partition(grudge)
        self.recorder.record("nemesis", "info", "start-partition", {**value, "done": True})
        self.applied.append({**event, "grudge": grudge, **({"leader": value["leader"]} if "leader" in value else {})})

    # -- role faults: the target is whoever holds the role at the moment the fault starts -----------------------

    def apply_role(self, event: dict) -> None:
        """Starts hit the nodes holding the role now; the paired stop heals exactly those nodes."""
        pair = event["pair"]
        if pair in self.resolved:
            nodes = self.resolved.pop(pair)
        else:
            started = time.monotonic()
            nodes = self.resolve_role(event)
            self.lag_s += time.monotonic() - started
            self.resolved[pair] = nodes
        for name in nodes:
            self.apply({**event, "node": name})

    def resolve_role(self, event: dict) -> list[str]:
        """Node names for a role fault's start.  When a role holder cannot be found (no quorum leader answers,
        the partition has no leader) a node drawn from the seed stands in, so the fault still happens; the
        history says so (`fallback`)."""
        controller, leaders = self.cluster.metadata_roles(self.topic)
        if event["target"] in ("controller", "both") and controller is None:
            controller = self.cluster.leader()          # ask the quorum itself (describe-quorum)
        if event["target"] == "leader":
            controller = None
        leader = None
        if event["target"] in ("leader", "both"):
            leader = partition_leader(leaders, event["partition"], avoid=controller)
        found = [n for n in (controller, leader) if n is not None]
        wanted = 2 if event["target"] == "both" else 1
        names = list(self.cluster.nodes)
        fallback = random.Random(f"{self.schedule.get('seed')}/role/{event['pair']}")
        while len(set(found)) < min(wanted, len(names)):
            found.append(fallback.choice(names))
        nodes = list(dict.fromkeys(found))
        self.recorder.record("nemesis", "info", "resolve-role",
                             {"target": event["target"], "pair": event["pair"], "controller": controller,
                              "leader": leader, "partition": event.get("partition"), "nodes": nodes,
                              "fallback": nodes != [n for n in (controller, leader) if n is not None]})
        return nodes
