"""`python -m jepsen_like test`: one run of the queue workload under a seeded fault schedule.

Order of a run, as in Jepsen: start the brokers and create the topic; run workers and nemesis for
`--time-limit` seconds; stop the workers; heal every fault; let the cluster recover; final reads by fresh
clients until every acknowledged offset has been read; then the checker decides and the run exits with
its code (0 valid, 1 invalid, 2 unknown, 3 harness error).  Everything lands in runs/<timestamp-seed>/:
test.json, schedule.json, history.jsonl, results.json, summary.txt and nodes' logs and data.
Current scope: one node on 127.0.0.1 (kill, pause); namespaces and partitions come with replication.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from jepsen_like.checker import EXIT_HARNESS_ERROR, check, exit_code, summary
from jepsen_like.history import HistoryRecorder
from jepsen_like.nemesis import FAULTS, NemesisThread, build_schedule, load_schedule
from jepsen_like.node import BrokerNode

REPO_ROOT = Path(__file__).resolve().parents[1]


def make_run_dir(store: Path, seed: int) -> Path:
    store.mkdir(parents=True, exist_ok=True)
    ignore = store / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# jepsen_like run directories: never committed\n*\n")
    run_dir = store / f"{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}-seed{seed}"
    suffix = 0
    while run_dir.exists():
        suffix += 1
        run_dir = run_dir.with_name(f"{run_dir.name}-{suffix}")
    run_dir.mkdir()
    return run_dir


def parse_nemeses(spec: str) -> list[str]:
    names = [n.strip() for n in spec.split(",") if n.strip() and n.strip() != "none"]
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        raise ValueError(f"--nemesis {','.join(unknown)}: not available yet (have: none, {', '.join(FAULTS)})")
    return names


def create_topic(bootstrap: str, partitions: int) -> None:
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    from jepsen_like.workload import TOPIC

    admin = AdminClient({"bootstrap.servers": bootstrap})
    future = admin.create_topics([NewTopic(TOPIC, num_partitions=partitions, replication_factor=1)])[TOPIC]
    try:
        future.result(timeout=30)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise


def client_logger(path: Path) -> logging.Logger:
    """librdkafka's own log (connection refused while a broker is down, ...) goes to the run's
    clients.log instead of flooding the console."""
    logger = logging.getLogger(f"jepsen_like.clients.{path.parent.name}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    return logger


def say(line: str, log) -> None:
    print(line, flush=True)
    log.write(line + "\n")


def run_test(args: argparse.Namespace) -> int:
    if args.nodes != 1:
        print("jepsen_like test: only --nodes 1 for now (multi-node comes with replication)", file=sys.stderr)
        return EXIT_HARNESS_ERROR
    try:
        nemeses = parse_nemeses(args.nemesis)
    except ValueError as exc:
        print(f"jepsen_like test: {exc}", file=sys.stderr)
        return EXIT_HARNESS_ERROR
    run_dir = make_run_dir(Path(args.store), args.seed)
    with open(run_dir / "summary.txt", "w") as log:
        try:
            return _run(args, nemeses, run_dir, log)
        except Exception as exc:  # anything unexpected is the harness's fault, never a verdict
            say(f"harness error: {exc}", log)
            traceback.print_exc(file=log)
            say(f"-> {run_dir}", log)
            return EXIT_HARNESS_ERROR


def _run(args, nemeses: list[str], run_dir: Path, log) -> int:
    from jepsen_like.workload import PROFILES, ValueSource, Worker

    overrides = dict(kv.split("=", 1) for kv in args.override)
    overrides.setdefault("num.partitions", str(args.keys))
    nodes = {f"n{i}": BrokerNode(f"n{i}", i, run_dir / f"n{i}", overrides=overrides, repo_root=REPO_ROOT)
             for i in range(1, args.nodes + 1)}
    schedule = (load_schedule(args.schedule) if args.schedule else
                build_schedule(args.seed, nemeses, args.time_limit, args.nemesis_interval, list(nodes)))
    (run_dir / "schedule.json").write_text(json.dumps(schedule, indent=2) + "\n")
    (run_dir / "test.json").write_text(json.dumps({**vars(args), "func": None, "nemeses": nemeses,
                                                   "argv": sys.argv}, indent=2, default=str) + "\n")
    say(f"jepsen_like seed={args.seed} nodes={args.nodes} time_limit={args.time_limit}s rate={args.rate}/s "
        f"concurrency={args.concurrency} keys={args.keys} profile={args.profile} nemeses={','.join(nemeses) or 'none'}",
        log)
    say("no network namespaces in this mode: partition nemeses unavailable (single node on 127.0.0.1)", log)
    workers: list[Worker] = []
    try:
        for node in nodes.values():
            node.start()
        bootstrap = ",".join(n.bootstrap for n in nodes.values())
        create_topic(bootstrap, args.keys)
        say(f"cluster up ({bootstrap}); schedule: {len(schedule['events']) // 2} faults (schedule.json)", log)

        with open(run_dir / "history.jsonl", "w") as sink:
            recorder = HistoryRecorder(sink)
            stop = threading.Event()
            values = ValueSource()
            run_tag = run_dir.name
            client_log = client_logger(run_dir / "clients.log")
            workers = [Worker(i, concurrency=args.concurrency, keys=args.keys, bootstrap=bootstrap,
                              profile=PROFILES[args.profile], recorder=recorder, values=values, seed=args.seed,
                              rate_per_worker=args.rate / args.concurrency, stop_event=stop, run_tag=run_tag,
                              client_log=client_log)
                       for i in range(args.concurrency)]
            t0 = time.monotonic()
            nemesis = NemesisThread(schedule, nodes, recorder, t0, stop)
            for thread in [*workers, nemesis]:
                thread.start()
            stop.wait(args.time_limit)
            stop.set()
            for thread in [*workers, nemesis]:
                thread.join(timeout=60)
            problems = [t.error for t in [*workers, nemesis] if t.error is not None]
            problems += [RuntimeError(f"{t.name} did not stop") for t in [*workers, nemesis] if t.is_alive()]
            if problems:
                raise RuntimeError(f"main phase failed: {problems[0]!r}")
            for event in nemesis.applied:
                say(f"[{event['at_s']:7.2f}s] nemesis {event['f']} {event['node']}", log)

            for name, node in nodes.items():
                if node.crashed():
                    recorder.record("nemesis", "info", "crashed", {"node": name})
                recorder.record("nemesis", "info", "heal", {"node": name})
                node.heal()
            say(f"healed; recovering {args.recovery_s}s, then final reads", log)
            time.sleep(args.recovery_s)
            targets = acknowledged_tails(recorder.ops)
            deadline = time.monotonic() + args.final_time_limit
            caught_up: list[bool] = []
            finals = [threading.Thread(target=lambda w=w: caught_up.append(
                w.final_reads(targets, deadline, time.monotonic))) for w in workers]
            for thread in finals:
                thread.start()
            for thread in finals:
                thread.join()
            say(f"final reads: {sum(caught_up)}/{len(workers)} readers caught up on {len(targets)} keys", log)
            history = list(recorder.ops)
    finally:
        for worker in workers:
            worker.shutdown()
        for node in nodes.values():
            node.stop()

    results = check(history)
    results["run_dir"] = str(run_dir)
    crashes = {name: node.unexpected_exits for name, node in nodes.items() if node.unexpected_exits}
    results["unexpected-node-exits"] = crashes
    if crashes:
        say(f"WARNING: brokers exited without being killed: {crashes} (see nodes' broker.log)", log)
    results["faults_applied"] = len(schedule["events"]) // 2
    (run_dir / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    say(summary(results), log)
    say(f"-> {run_dir}", log)
    return exit_code(results)


def acknowledged_tails(ops) -> dict[int, int]:
    """key -> highest offset of an ok send: the final reads must get at least that far."""
    tails: dict[int, int] = {}
    for op in ops:
        if op.f == "send" and op.type == "ok":
            for k, (offset, _value) in op.value:
                if offset is not None:
                    tails[k] = max(tails.get(k, -1), offset)
    return tails
