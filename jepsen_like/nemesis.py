"""A seeded, saved, replayable fault schedule and the thread that applies it.

Jepsen pairs every fault with its healing op (flip-flop) and staggers them at random gaps; here the whole
schedule is drawn up front from `--seed`, written to schedule.json, and can be replayed with
`--schedule`, so a failing run's faults can be repeated exactly (the client interleaving cannot).

Faults: kill (-9, then restart), pause (SIGSTOP, then SIGCONT) and partition (a grudge applied inside the
nodes' network namespaces, then healed).  Partition specs, as in Jepsen's nemesis/combined.clj: `one`
(isolate one node), `halves` (two random halves), `leader` (isolate the metadata quorum leader: the only
target resolved at run time, and recorded in the history), `one-way` (one node drops another's packets).
The first faults of a schedule cycle through the enabled kinds, so even a short smoke run sees each one.
"""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

FAULTS = {"kill": ("kill", "start"), "pause": ("pause", "resume"),
          "partition": ("start-partition", "stop-partition")}
PARTITION_SPECS = ("one", "halves", "leader", "one-way")


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
    raise ValueError(f"unknown partition spec {spec!r}")


def build_schedule(seed: int, nemeses: list[str], time_limit_s: float, interval_s: float,
                   nodes: list[str]) -> dict:
    rng = random.Random(f"{seed}/nemesis")
    events: list[dict] = []
    kinds = [n for n in nemeses if n in FAULTS]
    if "partition" in kinds and len(nodes) < 2:
        kinds.remove("partition")
    first_round = rng.sample(kinds, len(kinds))
    specs = list(PARTITION_SPECS)
    rng.shuffle(specs)
    if kinds:
        # The first fault comes early so that even a short smoke run sees one.
        t = rng.uniform(1.0, max(1.0, min(interval_s, time_limit_s / 4)))
        while t < time_limit_s - 1.0:
            kind = first_round.pop(0) if first_round else rng.choice(kinds)
            duration = rng.uniform(1.0, 4.0)
            start_f, stop_f = FAULTS[kind]
            if kind == "partition":
                spec = specs.pop(0) if specs else rng.choice(PARTITION_SPECS)
                start = {"at_s": round(t, 3), "f": start_f, "spec": spec,
                         "grudge": None if spec == "leader" else grudge_for(spec, nodes, rng)}
                stop = {"f": stop_f}
            else:
                node = rng.choice(nodes)
                start, stop = {"at_s": round(t, 3), "f": start_f, "node": node}, {"f": stop_f, "node": node}
            events.append(start)
            events.append({"at_s": round(min(t + duration, time_limit_s), 3), **stop})
            t += duration + rng.uniform(0.5, 2 * interval_s)
    return {"seed": seed, "nemeses": nemeses, "nodes": nodes, "time_limit_s": time_limit_s, "events": events}


def load_schedule(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def fault_windows(history) -> list[dict]:
    """[{kind, label, start_s, end_s}] from the nemesis ops of a history (for the plots)."""
    openers = {"kill": "kill", "pause": "pause", "start-partition": "partition"}
    closers = {"start": "kill", "resume": "pause", "stop-partition": "partition"}
    open_: dict[tuple, tuple] = {}
    windows = []
    end_s = max((op.time_ns for op in history), default=0) / 1e9
    for op in history:
        if op.process != "nemesis" or not isinstance(op.value, dict) or not op.value.get("done"):
            continue
        key_node = op.value.get("node")
        if op.f in openers:
            kind = openers[op.f]
            label = f"{kind} {key_node or op.value.get('spec', '')}".strip()
            open_[(kind, key_node if kind != "partition" else None)] = (op.time_ns / 1e9, label)
        elif op.f in closers:
            kind = closers[op.f]
            start = open_.pop((kind, key_node if kind != "partition" else None), None)
            if start:
                windows.append({"kind": kind, "label": start[1], "start_s": start[0], "end_s": op.time_ns / 1e9})
    for (kind, _), (start_s, label) in open_.items():
        windows.append({"kind": kind, "label": label, "start_s": start_s, "end_s": end_s})
    return windows


class NemesisThread(threading.Thread):
    """Applies the schedule's events at their times; each one recorded as two nemesis `info` ops
    (before and after), as Jepsen does.  `cluster` is a cluster_control.Cluster (or anything with
    `nodes`, `leader()`, `partition()`, `heal_network()`)."""

    def __init__(self, schedule: dict, cluster, recorder, t0: float, stop_event: threading.Event) -> None:
        super().__init__(name="nemesis", daemon=True)
        self.schedule, self.cluster, self.recorder = schedule, cluster, recorder
        self.t0, self.stop_event = t0, stop_event
        self.error: BaseException | None = None
        self.applied: list[dict] = []

    def run(self) -> None:
        try:
            for event in self.schedule["events"]:
                delay = self.t0 + event["at_s"] - time.monotonic()
                if delay > 0 and self.stop_event.wait(delay):
                    return
                self.apply(event)
        except BaseException as exc:  # surfaced by the harness as a harness error
            self.error = exc

    def apply(self, event: dict) -> None:
        if event["f"] in ("start-partition", "stop-partition"):
            self.apply_partition(event)
            return
        node = self.cluster.nodes[event["node"]]
        value = {"node": event["node"]}
        self.recorder.record("nemesis", "info", event["f"], value)
        getattr(node, {"kill": "kill9", "start": "start", "pause": "pause", "resume": "resume"}[event["f"]])()
        self.recorder.record("nemesis", "info", event["f"], {**value, "done": True})
        self.applied.append(event)

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
