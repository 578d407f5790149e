"""`python -m jepsen_like check HISTORY.jsonl` | `test ...` | `table ...` | `unsafe ...` | `cleanup`.

Exit codes are the checker's verdict so CI can gate on them: 0 valid, 1 invalid, 2 unknown,
3 harness error (bad arguments, unreadable history, broker that would not start).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from jepsen_like.checker import EXIT_HARNESS_ERROR, check, exit_code, summary
from jepsen_like.history import HistoryError, read_history


def cmd_check(args: argparse.Namespace) -> int:
    history_path = Path(args.history)
    try:
        history = read_history(history_path)
    except (OSError, HistoryError) as exc:
        print(f"jepsen_like check: cannot read history: {exc}", file=sys.stderr)
        return EXIT_HARNESS_ERROR
    results = check(history)
    out = Path(args.output) if args.output else history_path.parent / "results.json"
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(summary(results))
    print(f"results: {out}")
    return exit_code(results)


def cmd_test(args: argparse.Namespace) -> int:
    from jepsen_like.harness import run_test
    return run_test(args)


def cmd_cleanup(_args: argparse.Namespace) -> int:
    from jepsen_like.netns import cleanup_stale
    removed = cleanup_stale()
    print(f"removed {len(removed)} stale namespaces" + (f": {', '.join(removed)}" if removed else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jepsen_like", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    checker = commands.add_parser("check", help="check a history.jsonl; writes results.json next to it")
    checker.add_argument("history")
    checker.add_argument("--output", help="results file (default: results.json beside the history)")
    checker.set_defaults(func=cmd_check)

    test = commands.add_parser("test", help="run the queue workload against broker processes under faults")
    test.add_argument("--nodes", type=int, default=1)
    test.add_argument("--time-limit", type=float, default=30.0, help="seconds of workload and faults")
    test.add_argument("--rate", type=float, default=20.0, help="client ops per second, all workers together")
    test.add_argument("--concurrency", type=int, default=3, help="client workers")
    test.add_argument("--keys", type=int, default=3, help="keys = partitions of the test topic")
    test.add_argument("--nemesis", default="kill",
                      help="comma list of: none, partition, kill, pause, clock, disk, lose-unfsynced, delay, loss")
    test.add_argument("--nemesis-interval", type=float, default=6.0, help="mean seconds between faults")
    test.add_argument("--seed", type=int, default=0)
    test.add_argument("--profile", choices=("safe", "unsafe"), default="safe",
                      help="safe: acks=all + idempotence; unsafe: acks=1")
    test.add_argument("--replication-factor", type=int, default=None,
                      help="of the test topic (default: 3 on 3 or more nodes, else 1; min.insync.replicas RF-1)")
    test.add_argument("--unclean", action="store_true",
                      help="unclean.leader.election.enable=true (broker and topic): known unsafe")
    test.add_argument("--fsync-delay-ms", type=int, default=0,
                      help="with lose-unfsynced: each broker fsync first sleeps this long (a slow disk)")
    test.add_argument("--disk-mb", type=int, default=64, help="size of each node's tmpfs data dir (disk nemesis)")
    test.add_argument("--schedule", help="replay this schedule.json instead of drawing one from the seed")
    test.add_argument("--store", default="runs", help="directory that receives runs/<timestamp-seed>/")
    test.add_argument("--final-time-limit", type=float, default=60.0, help="max seconds for final reads")
    test.add_argument("--recovery-s", type=float, default=2.0, help="pause between healing and final reads")
    test.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                      help="extra broker config override (repeatable)")
    test.add_argument("--no-netns", action="store_true",
                      help="run nodes on 127.0.0.<i> even as root (partitions are then skipped)")
    test.add_argument("--partition-backend", choices=("auto", "nft", "iprule"), default="auto",
                      help="how grudges drop packets: nft sets, or iproute2 blackhole rules (auto: nft if installed)")
    test.set_defaults(func=cmd_test)

    from jepsen_like.campaign import add_parsers
    add_parsers(commands)

    cleanup = commands.add_parser("cleanup", help="delete network namespaces left by dead runs (jl<pid>-*)")
    cleanup.set_defaults(func=cmd_cleanup)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
