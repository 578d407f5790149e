"""A seeded, saved, replayable fault schedule and the thread that applies it.

Jepsen pairs every fault with its healing op (flip-flop) and staggers them at random gaps; here the whole
schedule is drawn up front from `--seed`, written to schedule.json, and can be replayed with
`--schedule`, so a failing run's faults can be repeated exactly (the client interleaving cannot).
Single-node scope for now: kill (-9, then restart) and pause (SIGSTOP, then SIGCONT) of n1.
"""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

FAULTS = {"kill": ("kill", "start"), "pause": ("pause", "resume")}


def build_schedule(seed: int, nemeses: list[str], time_limit_s: float, interval_s: float,
                   nodes: list[str]) -> dict:
    rng = random.Random(f"{seed}/nemesis")
    events: list[dict] = []
    kinds = [n for n in nemeses if n in FAULTS]
    if kinds:
        # The first fault comes early so that even a short smoke run sees one.
        t = rng.uniform(1.0, max(1.0, min(interval_s, time_limit_s / 3)))
        while t < time_limit_s - 1.0:
            kind = rng.choice(kinds)
            node = rng.choice(nodes)
            duration = rng.uniform(1.0, 4.0)
            start_f, stop_f = FAULTS[kind]
            events.append({"at_s": round(t, 3), "f": start_f, "node": node})
            events.append({"at_s": round(min(t + duration, time_limit_s), 3), "f": stop_f, "node": node})
            t += duration + rng.uniform(0.5, 2 * interval_s)
    return {"seed": seed, "nemeses": nemeses, "time_limit_s": time_limit_s, "events": events}


def load_schedule(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


class NemesisThread(threading.Thread):
    """Applies the schedule's events at their times; each one recorded as two nemesis `info` ops
    (before and after), as Jepsen does."""

    def __init__(self, schedule: dict, nodes: dict, recorder, t0: float, stop_event: threading.Event) -> None:
        super().__init__(name="nemesis", daemon=True)
        self.schedule, self.nodes, self.recorder = schedule, nodes, recorder
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
        node = self.nodes[event["node"]]
        value = {"node": event["node"]}
        self.recorder.record("nemesis", "info", event["f"], value)
        getattr(node, {"kill": "kill9", "start": "start", "pause": "pause", "resume": "resume"}[event["f"]])()
        self.recorder.record("nemesis", "info", event["f"], {**value, "done": True})
        self.applied.append(event)
