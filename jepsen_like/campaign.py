"""Many seeded runs at once: the results table of the safe profile, and the demonstration that the harness
catches a known-unsafe setup.

`table`: N runs (seeds START..START+N-1) of `python -m jepsen_like test`, each in its own process and run
directory under one campaign directory, then table.md there: seed, ops, acknowledged sends, anomalies,
validity, faults injected.  Exits 0 only if every run was valid.
`unsafe`: runs a known-unsafe setup seed after seed (default: one node, RF 1, acks=1, lose-unfsynced with a
200 ms fsync, so an acknowledged write can still be unsynced when the node dies) and stops at the first run
whose checker reports lost writes.  Exits 0 when lost writes were caught within the seeds, 1 when not: a
harness that cannot fail proves nothing.
`broken`: the same idea for the stream workload against a deliberately broken broker (`kraftpy.test.broken`
through `--override`): runs seed after seed under role faults and stops at the first run that shows the
variant's symptom: `drop_producer_state_on_become_leader` -> duplicates from an idempotent producer (or any
other safety anomaly), `short_session_on_new_controller` -> a broker fenced although no fault touched it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from jepsen_like.harness import REPO_ROOT

LOSS_TYPES = ("lost-write", "inconsistent-offsets", "unseen")


def campaign_dir(store: str, name: str) -> Path:
    root = Path(store)
    root.mkdir(parents=True, exist_ok=True)
    ignore = root / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# jepsen_like run directories: never committed\n*\n")
    path = root / f"{name}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}"
    path.mkdir()
    return path


def run_one(test_args: list[str], seed: int, store: Path, timeout_s: float) -> dict:
    """One test run in its own process; returns its results.json (or a harness-error stub)."""
    cmd = [sys.executable, "-m", "jepsen_like", "test", *test_args, "--seed", str(seed), "--store", str(store)]
    before = {p.name for p in store.iterdir() if p.is_dir()}
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout_s)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        code = 3
    wall_s = time.monotonic() - started
    new = sorted({p.name for p in store.iterdir() if p.is_dir()} - before)
    results: dict = {"valid?": "harness-error", "exit": code}
    if new and (store / new[-1] / "results.json").exists():
        results = json.loads((store / new[-1] / "results.json").read_text())
        results["exit"] = code
    results["seed"] = seed
    results["wall_s"] = round(wall_s, 1)
    results["dir"] = new[-1] if new else None
    return results


def anomalies_of(results: dict) -> dict[str, int]:
    out = {}
    for name, found in (results.get("anomalies") or {}).items():
        count = found.get("count", len(found)) if isinstance(found, dict) else len(found or [])
        if count:
            out[name] = count
    return out


def stats_of(results: dict) -> tuple[int, int]:
    """(client ops completed, acknowledged sends) from results.json's stats {f: {type: count}}."""
    stats = results.get("stats") or {}
    ops = sum(n for by_type in stats.values() if isinstance(by_type, dict) for n in by_type.values())
    return ops, (stats.get("send") or {}).get("ok", 0)


def availability_of(results: dict) -> str:
    """Stream runs: the longest stretch any partition went without an acknowledged write, and how many
    fencings hit a broker no fault touched.  "-" for the queue workload, which measures neither."""
    availability = results.get("availability")
    if not availability:
        return "-"
    gaps = [g["max_gap_s"] for g in (availability.get("max-ack-gap") or {}).values()]
    fenced = len(availability.get("unexpected-fencing") or [])
    return f"max gap {max(gaps, default=0):.1f} s, unexpected fencing {fenced}"


def table_markdown(rows: list[dict], title: str) -> str:
    lines = [f"# {title}", "",
             "| seed | ops | acknowledged | anomalies | valid? | faults injected | availability | wall s |",
             "|---:|---:|---:|---|---|---|---|---:|"]
    for r in rows:
        ops, acked = stats_of(r)
        anomalies = ", ".join(f"{k} {v}" for k, v in anomalies_of(r).items()) or "none"
        faults = {**{k: v for k, v in (r.get("faults") or {}).items() if v}, **(r.get("faults-by-role") or {})}
        faults_text = ", ".join(f"{k} {v}" for k, v in faults.items()) or "none"
        lines.append(f"| {r['seed']} | {ops} | {acked} | {anomalies} | {r.get('valid?')} | {faults_text} | "
                     f"{availability_of(r)} | {r.get('wall_s')} |")
    valid = sum(1 for r in rows if r.get("valid?") is True)
    lines += ["", f"{valid}/{len(rows)} runs valid."]
    return "\n".join(lines) + "\n"


def cmd_table(args) -> int:
    store = campaign_dir(args.store, "table")
    test_args = ["--workload", args.workload, "--nodes", str(args.nodes), "--time-limit", str(args.time_limit),
                 *rate_args(args), "--nemesis", args.nemesis, "--profile", args.profile, *args.extra]
    (store / "campaign.json").write_text(json.dumps({**vars(args), "func": None, "test_args": test_args},
                                                    indent=2) + "\n")
    rows = []
    for seed in range(args.seed_start, args.seed_start + args.runs):
        row = run_one(test_args, seed, store, args.time_limit + args.run_timeout_s)
        rows.append(row)
        print(f"seed {seed}: valid? {row.get('valid?')} acknowledged {stats_of(row)[1]} "
              f"anomalies {anomalies_of(row) or 'none'} faults {row.get('faults')} {availability_of(row)} "
              f"({row['wall_s']} s)", flush=True)
        (store / "table.md").write_text(table_markdown(rows, f"jepsen_like: {len(rows)} runs, {' '.join(test_args)}"))
    print(f"table: {store / 'table.md'}")
    print((store / "table.md").read_text())
    return 0 if all(r.get("valid?") is True for r in rows) else 1


def cmd_unsafe(args) -> int:
    store = campaign_dir(args.store, "unsafe")
    test_args = ["--nodes", str(args.nodes), "--time-limit", str(args.time_limit), "--rate", str(args.rate),
                 "--concurrency", "4", "--nemesis", args.nemesis, "--profile", "unsafe",
                 "--replication-factor", str(args.replication_factor), "--fsync-delay-ms", str(args.fsync_delay_ms),
                 "--nemesis-interval", str(args.nemesis_interval), "--final-time-limit", "10",
                 *(["--unclean"] if args.unclean else []), *args.extra]
    rows = []
    for seed in range(args.seed_start, args.seed_start + args.seeds):
        row = run_one(test_args, seed, store, args.time_limit + 120)
        rows.append(row)
        found = anomalies_of(row)
        print(f"seed {seed}: valid? {row.get('valid?')} anomalies {found or 'none'} ({row['wall_s']} s)", flush=True)
        if "lost-write" in found:
            (store / "table.md").write_text(table_markdown(rows, "known-unsafe setup"))
            print(f"CAUGHT: lost writes in seed {seed} ({found['lost-write']}), run {store / row['dir']}")
            return 0
    (store / "table.md").write_text(table_markdown(rows, "known-unsafe setup"))
    print(f"NOT CAUGHT: no lost write in {args.seeds} seeds; see {store}")
    return 1


def rate_args(args) -> list[str]:
    """--rate only when given: its default depends on the workload (`test` decides)."""
    return ["--rate", str(args.rate)] if args.rate is not None else []


# The faults that provoke each deliberate bug: a partition leader change with batches in flight (producer state
# must survive it), or a new active controller (every broker's session must survive it).
BROKEN_NEMESES = {"drop_producer_state_on_become_leader": "pause-leader,kill-leader,pause-both,pause-controller",
                  "short_session_on_new_controller": "pause-controller,kill-controller"}


def broken_symptoms(results: dict, variant: str) -> list[str]:
    """What in a run's results shows the deliberate bug `variant`; empty when the run looks healthy."""
    found = []
    if variant == "drop_producer_state_on_become_leader":
        found += [name for name in results.get("bad-error-types") or []]
    if variant == "short_session_on_new_controller":
        fenced = (results.get("availability") or {}).get("unexpected-fencing") or []
        if fenced:
            found.append(f"unexpected-fencing {len(fenced)}")
    return found


def cmd_broken(args) -> int:
    store = campaign_dir(args.store, f"broken-{args.variant}")
    test_args = ["--workload", "stream", "--nodes", str(args.nodes), "--time-limit", str(args.time_limit),
                 *rate_args(args), "--nemesis", args.nemesis or BROKEN_NEMESES[args.variant],
                 "--nemesis-interval", str(args.nemesis_interval),
                 "--override", f"kraftpy.test.broken={args.variant}", *args.extra]
    rows = []
    title = f"stream workload against kraftpy.test.broken={args.variant}"
    for seed in range(args.seed_start, args.seed_start + args.seeds):
        row = run_one(test_args, seed, store, args.time_limit + 240)
        rows.append(row)
        (store / "table.md").write_text(table_markdown(rows, title))
        symptoms = broken_symptoms(row, args.variant)
        print(f"seed {seed}: valid? {row.get('valid?')} acknowledged {stats_of(row)[1]} anomalies "
              f"{anomalies_of(row) or 'none'} {availability_of(row)} ({row['wall_s']} s)", flush=True)
        if row.get("valid?") == "harness-error":
            print(f"harness error in seed {seed} (exit {row.get('exit')}): see {store}")
            return 3
        if symptoms:
            print(f"CAUGHT: {', '.join(symptoms)} in seed {seed}, run {store / row['dir']}")
            return 0
    print(f"NOT CAUGHT: {args.variant} showed no symptom in {args.seeds} seeds; see {store}")
    return 1


def add_parsers(commands) -> None:
    table = commands.add_parser("table", help="N seeded safe-profile runs and a markdown results table")
    table.add_argument("--runs", type=int, default=20)
    table.add_argument("--seed-start", type=int, default=0)
    table.add_argument("--nodes", type=int, default=3)
    table.add_argument("--time-limit", type=float, default=60.0)
    table.add_argument("--workload", choices=("queue", "stream"), default="queue")
    table.add_argument("--rate", type=float, default=None, help="default: the workload's (see `test --help`)")
    table.add_argument("--nemesis", default="partition,kill,pause,clock,lose-unfsynced")
    table.add_argument("--profile", choices=("safe", "unsafe"), default="safe")
    table.add_argument("--store", default="runs")
    table.add_argument("--run-timeout-s", type=float, default=240.0, help="per run, beyond --time-limit")
    table.add_argument("extra", nargs="*", help="more `test` arguments, after --")
    table.set_defaults(func=cmd_table)

    unsafe = commands.add_parser("unsafe", help="show the harness catches lost writes of a known-unsafe setup")
    unsafe.add_argument("--seeds", type=int, default=10)
    unsafe.add_argument("--seed-start", type=int, default=0)
    unsafe.add_argument("--nodes", type=int, default=1)
    unsafe.add_argument("--replication-factor", type=int, default=1)
    unsafe.add_argument("--unclean", action="store_true", help="RF 3 variant: unclean leader election on")
    unsafe.add_argument("--time-limit", type=float, default=15.0)
    unsafe.add_argument("--rate", type=float, default=40.0)
    unsafe.add_argument("--nemesis", default="lose-unfsynced")
    unsafe.add_argument("--nemesis-interval", type=float, default=2.0)
    unsafe.add_argument("--fsync-delay-ms", type=int, default=200)
    unsafe.add_argument("--store", default="runs")
    unsafe.add_argument("extra", nargs="*", help="more `test` arguments, after --")
    unsafe.set_defaults(func=cmd_unsafe)

    broken = commands.add_parser("broken", help="show the stream workload catches a deliberately broken broker")
    broken.add_argument("--variant", choices=tuple(BROKEN_NEMESES), default="drop_producer_state_on_become_leader",
                        help="value of kraftpy.test.broken")
    broken.add_argument("--seeds", type=int, default=10)
    broken.add_argument("--seed-start", type=int, default=0)
    broken.add_argument("--nodes", type=int, default=3)
    broken.add_argument("--time-limit", type=float, default=60.0)
    broken.add_argument("--rate", type=float, default=None, help="records/s per producer (default: test's)")
    broken.add_argument("--nemesis", default=None, help="default: the faults that provoke the variant")
    broken.add_argument("--nemesis-interval", type=float, default=4.0)
    broken.add_argument("--store", default="runs")
    broken.add_argument("extra", nargs="*", help="more `test` arguments, after --")
    broken.set_defaults(func=cmd_broken)
