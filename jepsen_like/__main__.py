"""`python -m jepsen_like check HISTORY.jsonl` | `test ...` | `table ...` | `unsafe ...` | `broken ...` | `cleanup`.

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
from jepsen_like.nemesis import ROLE_FAULT_S


def cmd_check(args: argparse.Namespace) -> int:
    history_path = Path(args.history)
    try:
        history = read_history(history_path)
    except (OSError, HistoryError) as exc:
        print(f"jepsen_like check: cannot read history: {exc}", file=sys.stderr)
        return EXIT_HARNESS_ERROR
    if any(op.f == "final-read" or "id" in op.extra for op in history):   # written by the stream workload
        from jepsen_like.stream_checker import check_stream
        from jepsen_like.stream_checker import summary as stream_summary
        results, verdict_summary = check_stream(history), stream_summary
    else:
        results, verdict_summary = check(history), summary
    out = Path(args.output) if args.output else history_path.parent / "results.json"
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(verdict_summary(results))
    print(f"results: {out}")
    return exit_code(results)


def cmd_test(args: argparse.Namespace) -> int:
    from jepsen_like.harness import run_test
    if args.rate is None:
        args.rate = 200.0 if args.workload == "stream" else 20.0
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

    test = commands.add_parser("test", help="run a workload against broker processes under faults")
    test.add_argument("--workload", choices=("queue", "stream"), default="queue",
                      help="queue: Jepsen's queue, one synchronous send per worker; stream: asynchronous "
                           "producers (idempotent and not) and a consumer group (stream.py)")
    test.add_argument("--nodes", type=int, default=1)
    test.add_argument("--time-limit", type=float, default=30.0, help="seconds of workload and faults")
    test.add_argument("--rate", type=float, default=None,
                      help="queue: client ops per second, all workers together (default 20); "
                           "stream: records per second per producer (default 200)")
    test.add_argument("--producers", type=int, default=4, help="stream: producers")
    test.add_argument("--idempotent-producers", type=int, default=None,
                      help="stream: how many of the producers use enable.idempotence=true (default: the larger half)")
    test.add_argument("--consumers", type=int, default=2, help="stream: members of the consumer group")
    test.add_argument("--role-fault-s", type=float, nargs=2, default=list(ROLE_FAULT_S), metavar=("MIN", "MAX"),
                      help="duration range of the role faults (pause-controller, ...), seconds")
    test.add_argument("--concurrency", type=int, default=3, help="client workers")
    test.add_argument("--keys", type=int, default=3, help="keys = partitions of the test topic")
    test.add_argument("--nemesis", default="kill",
                      help="comma list of: none, partition, kill, pause, clock, disk, lose-unfsynced, delay, loss, "
                           "pause-controller, kill-controller, pause-leader, kill-leader, pause-both")
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
