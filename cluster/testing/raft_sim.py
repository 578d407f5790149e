"""Command line for the seeded Raft simulator: run many seeds, stop at the first violation, print its replay.

    python -m cluster.testing.raft_sim --seeds 2000 [--start 0] [--nodes 3|5] [--steps 300] [--observers 0]

Each seed is an independent ``SimCluster`` run (see sim_cluster.py).  On a violation the tool prints the
seed, the property that broke, the traceback, and the exact command that replays that one seed, then exits
with status 1.  ``--unsafe FLAG`` switches on a deliberate bug (see ``UnsafeFlags``) to watch it get caught.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from cluster.raft.config import UnsafeFlags
from cluster.testing.sim_cluster import SimCluster, SimResult

_UNSAFE_NAMES = tuple(field.name for field in dataclasses.fields(UnsafeFlags))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cluster.testing.raft_sim", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds to run")
    parser.add_argument("--start", type=int, default=0, help="first seed")
    parser.add_argument("--nodes", type=int, choices=(1, 3, 5), default=3, help="number of voters")
    parser.add_argument("--observers", type=int, default=0, help="number of observers (non-voters)")
    parser.add_argument("--steps", type=int, default=1000, help="chaos events per seed before healing")
    parser.add_argument("--unsafe", action="append", choices=_UNSAFE_NAMES, default=[],
                        help="switch on a deliberate bug (repeatable)")
    parser.add_argument("--keep-going", action="store_true", help="run every seed even after a failure")
    return parser.parse_args(argv)


def replay_command(args: argparse.Namespace, seed: int) -> str:
    parts = ["python -m cluster.testing.raft_sim", "--seeds 1", f"--start {seed}", f"--nodes {args.nodes}",
             f"--steps {args.steps}"]
    if args.observers:
        parts.append(f"--observers {args.observers}")
    parts.extend(f"--unsafe {name}" for name in args.unsafe)
    return " ".join(parts)


def run_seed(args: argparse.Namespace, seed: int) -> SimResult:
    unsafe = UnsafeFlags(**dict.fromkeys(args.unsafe, True))
    return SimCluster(seed, voters=args.nodes, observers=args.observers, unsafe=unsafe).run(args.steps)


def report_failure(args: argparse.Namespace, result: SimResult) -> None:
    print(f"\nFAILED seed {result.seed} after {result.steps} steps at t={result.sim_time_ms} ms: {result.violation}")
    print(result.traceback_text.rstrip())
    print(f"replay: {replay_command(args, result.seed)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    failures, steps, commits, elections = [], 0, 0, 0
    for seed in range(args.start, args.start + args.seeds):
        result = run_seed(args, seed)
        steps, commits, elections = steps + result.steps, commits + result.committed_entries, elections + result.leaders_elected
        if not result.ok:
            report_failure(args, result)
            failures.append(seed)
            if not args.keep_going:
                break
    elapsed_s = max(time.perf_counter() - started, 1e-9)
    ran = seeds_run(args, failures)
    print(f"{ran} seeds ({args.nodes} voters, {args.steps} steps) in {elapsed_s:.1f} s: {ran / elapsed_s:.1f} seeds/s, "
          f"{steps / elapsed_s:.0f} events/s, {commits} entries committed, {elections} leaders elected, "
          f"{len(failures)} failed")
    return 1 if failures else 0


def seeds_run(args: argparse.Namespace, failures: list[int]) -> int:
    if failures and not args.keep_going:
        return failures[0] - args.start + 1
    return args.seeds


if __name__ == "__main__":
    sys.exit(main())
