"""Time from launching a single-node broker to its "kraftpy broker started" log line, for one or two trees.

A single node is a one-voter metadata quorum: it elects itself, registers with its own controller and is
unfenced before it serves.  This prints how long that takes from ``exec`` (fresh data directory, then a restart
on the same directory), so a change to the start-up path can be compared with a reference tree measured in the
same run (``--reference /path/to/other/checkout``; its own .venv is used).  Runs alternate between the trees
so that a noisy machine hits both alike.  Slowness never fails: the exit status is non-zero only when a broker
did not start.

    .venv/bin/python bench/startup.py [--runs 5] [--reference ../kraftpy-before]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))

from broker_process import free_port  # noqa: E402

STARTED_LINE = "kraftpy broker started"
TIMEOUT_S = 30.0


def start_seconds(tree: Path, data_dir: Path, port: int) -> float:
    """Launches the tree's broker on ``data_dir`` and returns the seconds until it logs that it started."""
    config = data_dir / "server.properties"
    config.write_text(f"node.id=1\nlisteners=PLAINTEXT://127.0.0.1:{port}\nlog.dirs={data_dir / 'logs'}\n"
                      "metrics.listener=\n")
    python = tree / ".venv" / "bin" / "python"
    started = time.monotonic()
    process = subprocess.Popen([str(python), "-m", "cluster", "broker", "--config", str(config)], cwd=tree,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while time.monotonic() - started < TIMEOUT_S:
            line = process.stderr.readline()
            if not line:
                break
            if STARTED_LINE in line:
                return time.monotonic() - started
        raise RuntimeError(f"{tree}: no {STARTED_LINE!r} line within {TIMEOUT_S:.0f} s")
    finally:
        process.terminate()
        process.wait(10)


def measure(tree: Path, scratch: Path) -> tuple[float, float]:
    """(fresh directory, restart) start times of one broker of ``tree``."""
    data_dir = Path(tempfile.mkdtemp(prefix="startup-", dir=scratch))
    try:
        port = free_port()
        return start_seconds(tree, data_dir, port), start_seconds(tree, data_dir, port)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="start-ups per tree (default 5)")
    parser.add_argument("--reference", type=Path, help="another checkout (with its own .venv) to compare with")
    args = parser.parse_args()
    trees = {"this": Path(__file__).resolve().parents[1]}
    if args.reference is not None:
        trees["reference"] = args.reference.resolve()
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory(prefix="kraftpy-startup-") as scratch:
        for _ in range(args.runs):
            for name, tree in trees.items():
                results[name].append(measure(tree, Path(scratch)))
    for name, runs in results.items():
        fresh = statistics.median(r[0] for r in runs)
        restart = statistics.median(r[1] for r in runs)
        print(json.dumps({"tree": str(trees[name]), "runs": len(runs), "fresh_median_s": round(fresh, 3),
                          "restart_median_s": round(restart, 3)}))
        print(f"# {name}: fresh directory {fresh:.2f} s, restart {restart:.2f} s (median of {len(runs)})")
    if "reference" in results:
        delta = statistics.median(r[0] for r in results["this"]) - statistics.median(
            r[0] for r in results["reference"])
        print(f"# this - reference (fresh directory): {delta:+.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
