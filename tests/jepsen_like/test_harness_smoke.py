"""The harness end to end: a ~20 s safe-profile run against a real broker process with kill -9 faults,
checked valid; plus the seeded schedule's determinism."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jepsen_like.history import read_history
from jepsen_like.nemesis import build_schedule

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_schedule_is_seeded_paired_and_early():
    a = build_schedule(7, ["kill", "pause"], 20.0, 6.0, ["n1"])
    assert a == build_schedule(7, ["kill", "pause"], 20.0, 6.0, ["n1"])
    assert a != build_schedule(8, ["kill", "pause"], 20.0, 6.0, ["n1"])
    events = a["events"]
    assert events and events[0]["at_s"] <= 20.0 / 3
    pairs = {"kill": "start", "pause": "resume"}
    for start, stop in zip(events[::2], events[1::2], strict=True):
        assert pairs[start["f"]] == stop["f"] and start["at_s"] <= stop["at_s"] <= 20.0
    assert build_schedule(7, [], 20.0, 6.0, ["n1"])["events"] == []


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_smoke_run_with_kills_is_valid(tmp_path):
    cmd = [sys.executable, "-m", "jepsen_like", "test", "--nodes", "1", "--time-limit", "20", "--rate", "20",
           "--nemesis", "kill", "--seed", "3", "--store", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=220)
    runs = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(runs) == 1, proc.stdout + proc.stderr
    run = runs[0]
    assert proc.returncode == 0, proc.stdout + proc.stderr + (run / "summary.txt").read_text()

    results = json.loads((run / "results.json").read_text())
    assert results["valid?"] is True and results["bad-error-types"] == []
    assert results["unexpected-node-exits"] == {}
    schedule = json.loads((run / "schedule.json").read_text())
    assert any(e["f"] == "kill" for e in schedule["events"])

    history = read_history(run / "history.jsonl")
    kills = [op for op in history if op.process == "nemesis" and op.f == "kill" and op.value.get("done")]
    assert kills, "the schedule's kill never ran"
    acked = [op for op in history if op.f == "send" and op.type == "ok"]
    assert len(acked) >= 10
    after_kill = [op for op in acked if op.time_ns > kills[0].time_ns]
    assert after_kill, "no acknowledged write after a kill: the broker never recovered"
    final_assigns = [op for op in history if op.f == "assign" and op.extra.get("seek_to_beginning")]
    assert final_assigns
    assert (run / "n1" / "broker.log").exists() and (tmp_path / ".gitignore").read_text().strip().endswith("*")
