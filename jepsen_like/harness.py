"""`python -m jepsen_like test`: one run of the queue or stream workload under a seeded fault schedule.

Order of a run, as in Jepsen: start the brokers and create the topic; run workers and nemesis for
`--time-limit` seconds; stop the workers; heal every fault; let the cluster recover; final reads by fresh
clients until every acknowledged offset has been read; then the checker decides and the run exits with
its code (0 valid, 1 invalid, 2 unknown, 3 harness error).  Everything lands in runs/<timestamp-seed>/:
test.json, schedule.json, history.jsonl, results.json, summary.txt, the PNG plots and each node's log
and data (n<i>/).  As root the nodes live in network namespaces (netns.py) and partitions are available;
otherwise (or with --no-netns) they run on 127.0.0.<i>, the partition nemesis is skipped, and both the
console and results.json say so.  With more than one node the topic is RF=1 until partitions are
replicated: a partition whose only replica is killed, paused or cut off is unavailable (fail/info ops),
and must still hold every acknowledged write once healed.
`--workload stream` (stream.py, stream_checker.py) runs asynchronous producers and a consumer group instead,
drains the producers after healing, reads every partition to its high_watermark, and adds to the verdict what
the brokers' logs say about fencing ("fenced brokers [...]: session expired" from the active controller).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import sys
import threading
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from jepsen_like.checker import EXIT_HARNESS_ERROR, check, exit_code, summary
from jepsen_like.cluster_control import Cluster
from jepsen_like.faults import PacketControl
from jepsen_like.history import HistoryRecorder
from jepsen_like.nemesis import FAULTS, NETWORK_KINDS, OPENERS, NemesisThread, build_schedule, load_schedule
from jepsen_like.report import plot
from jepsen_like.stream_checker import check_stream
from jepsen_like.stream_checker import summary as stream_summary

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


def create_topic(bootstrap: str, partitions: int, replication_factor: int = 1, unclean: bool = False,
                 topic_name: str | None = None) -> None:
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    from jepsen_like.workload import TOPIC as QUEUE_TOPIC

    name = topic_name or QUEUE_TOPIC
    admin = AdminClient({"bootstrap.servers": bootstrap})
    configs = {"unclean.leader.election.enable": "true"} if unclean else {}
    if replication_factor >= 2:
        # acks=all then survives the loss of all but one replica without becoming unavailable at the first loss.
        configs["min.insync.replicas"] = str(replication_factor - 1)
    topic = NewTopic(name, num_partitions=partitions, replication_factor=replication_factor, config=configs)
    future = admin.create_topics([topic])[name]
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
    log.flush()     # a run that hangs or is killed still leaves how far it got


def run_test(args: argparse.Namespace) -> int:
    if args.nodes < 1:
        print("jepsen_like test: --nodes must be at least 1", file=sys.stderr)
        return EXIT_HARNESS_ERROR
    try:
        nemeses = parse_nemeses(args.nemesis)
    except ValueError as exc:
        print(f"jepsen_like test: {exc}", file=sys.stderr)
        return EXIT_HARNESS_ERROR
    run_dir = make_run_dir(Path(args.store), args.seed)
    if threading.current_thread() is threading.main_thread():
        # SIGTERM unwinds like an exception, so the finally blocks stop brokers and delete namespaces.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(EXIT_HARNESS_ERROR))
    with open(run_dir / "summary.txt", "w") as log:
        try:
            return _run(args, nemeses, run_dir, log)
        except Exception as exc:  # anything unexpected is the harness's fault, never a verdict
            say(f"harness error: {exc}", log)
            traceback.print_exc(file=log)
            say(f"-> {run_dir}", log)
            return EXIT_HARNESS_ERROR


def _run(args, nemeses: list[str], run_dir: Path, log) -> int:
    overrides = dict(kv.split("=", 1) for kv in args.override)
    overrides.setdefault("num.partitions", str(args.keys))
    if args.unclean:
        overrides["unclean.leader.election.enable"] = "true"
    cluster = Cluster(run_dir, args.nodes, overrides=overrides, repo_root=REPO_ROOT,
                      use_netns=not args.no_netns, partition_backend=args.partition_backend,
                      features=frozenset(nemeses), fsync_delay_ms=args.fsync_delay_ms, disk_mb=args.disk_mb,
                      seed=args.seed)
    skipped: list[str] = []
    if "partition" in nemeses and not cluster.partitions_available:
        why = "one node" if args.nodes == 1 else f"no network namespaces ({cluster.netns_skipped_reason})"
        skipped.append(f"partition: {why}")
        nemeses = [n for n in nemeses if n != "partition"]
    for kind in ("delay", "loss"):
        if kind in nemeses:
            why = (f"no network namespaces ({cluster.netns_skipped_reason})" if cluster.network is None
                   else PacketControl.unavailable_reason(kind))
            if why:
                skipped.append(f"{kind}: {why}")
                nemeses = [n for n in nemeses if n != kind]
    if "disk" in nemeses and (why := disk_unavailable_reason()):
        skipped.append(f"disk: {why}")
        nemeses = [n for n in nemeses if n != "disk"]
        cluster.disk = None
    if args.schedule:
        schedule = load_schedule(args.schedule)
        unknown = {e.get("node") for e in schedule["events"]} - {None, *cluster.nodes}
        if unknown:
            raise ValueError(f"--schedule names nodes this run does not have: {sorted(unknown)}")
        if cluster.network is None and any(kind_of(e) in NETWORK_KINDS for e in schedule["events"]):
            skipped.append("partition/delay/loss: events dropped from the replayed schedule (no network namespaces)")
            schedule = {**schedule, "events": [e for e in schedule["events"] if kind_of(e) not in NETWORK_KINDS]}
    else:
        schedule = build_schedule(args.seed, nemeses, args.time_limit, args.nemesis_interval, list(cluster.nodes),
                                  role_fault_s=tuple(args.role_fault_s), topic_partitions=args.keys)
    (run_dir / "schedule.json").write_text(json.dumps(schedule, indent=2) + "\n")
    (run_dir / "test.json").write_text(json.dumps({**vars(args), "func": None, "nemeses": nemeses,
                                                   "cluster_mode": cluster.mode, "skipped_nemeses": skipped,
                                                   "argv": sys.argv}, indent=2, default=str) + "\n")
    workers = (f"producers={args.producers} (idempotent {idempotent_count(args)}) consumers={args.consumers}"
               if args.workload == "stream" else f"concurrency={args.concurrency}")
    say(f"jepsen_like workload={args.workload} seed={args.seed} nodes={args.nodes} time_limit={args.time_limit}s "
        f"rate={args.rate}/s {workers} keys={args.keys} profile={args.profile} "
        f"nemeses={','.join(nemeses) or 'none'}", log)
    say(f"cluster: {cluster.mode}", log)
    for line in skipped:
        say(f"SKIPPED nemesis {line}", log)
    phases = _run_stream_phases if args.workload == "stream" else _run_phases
    try:
        history = phases(args, cluster, schedule, run_dir, log)
    finally:
        cluster.stop()

    if args.workload == "stream":
        results = check_stream(history)
        results["availability"].update(fencing_report(history, cluster))
        verdict_summary = stream_summary
    else:
        results = check(history)
        verdict_summary = summary
    results["run_dir"] = str(run_dir)
    results["cluster-mode"] = cluster.mode
    results["skipped-nemeses"] = skipped
    crashes = {name: node.unexpected_exits for name, node in cluster.nodes.items() if node.unexpected_exits}
    results["unexpected-node-exits"] = crashes
    if crashes:
        say(f"WARNING: brokers exited without being killed: {crashes} (see nodes' broker.log)", log)
    excused = {name: node.excused_exits for name, node in cluster.nodes.items() if node.excused_exits}
    results["excused-node-exits"] = excused
    if excused:
        say(f"note: brokers stopped during a disk-full fault (excused, restarted at healing): {excused}", log)
    applied = [op for op in history if op.process == "nemesis" and isinstance(op.value, dict)
               and op.value.get("done") and op.f in OPENERS and not op.value.get("final")]
    results["faults_applied"] = len(applied)
    results["faults"] = {f: sum(1 for op in applied if op.f == f)
                         for f in ("kill", "pause", "start-partition", *[o for o in OPENERS if o not in
                                                                        ("kill", "pause", "start-partition")])}
    roles = [f"{op.f}-{op.value['target']}" for op in applied if op.value.get("target")]
    results["faults-by-role"] = {name: roles.count(name) for name in sorted(set(roles))}
    results["plots"] = plot(history, run_dir)
    (run_dir / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    say(verdict_summary(results), log)
    say(f"faults applied: {results['faults']}" + (f" by role {results['faults-by-role']}" if roles else ""), log)
    say(results["plots"], log)
    say(f"-> {run_dir}", log)
    return exit_code(results)


def _run_phases(args, cluster: Cluster, schedule: dict, run_dir: Path, log) -> list:
    from jepsen_like.workload import PROFILES, TOPIC, ValueSource, Worker

    workers: list[Worker] = []
    try:
        cluster.start()
        replication_factor = args.replication_factor or (3 if args.nodes >= 3 else 1)
        create_topic(cluster.bootstrap, args.keys, replication_factor, args.unclean)
        say(f"cluster up ({cluster.bootstrap}); schedule: {len(schedule['events']) // 2} faults (schedule.json)",
            log)
        with open(run_dir / "history.jsonl", "w") as sink:
            recorder = HistoryRecorder(sink)
            stop = threading.Event()
            values = ValueSource()
            client_log = client_logger(run_dir / "clients.log")
            workers = [Worker(i, concurrency=args.concurrency, keys=args.keys, bootstrap=cluster.bootstrap,
                              profile=PROFILES[args.profile], recorder=recorder, values=values, seed=args.seed,
                              rate_per_worker=args.rate / args.concurrency, stop_event=stop,
                              run_tag=run_dir.name, client_log=client_log)
                       for i in range(args.concurrency)]
            nemesis = NemesisThread(schedule, cluster, recorder, time.monotonic(), stop, topic=TOPIC)
            main_phase(args.time_limit, workers, nemesis, stop, log)
            heal_all(cluster, recorder)
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
            return list(recorder.ops)
    finally:
        for worker in workers:
            worker.shutdown()


def main_phase(time_limit_s: float, workers: list, nemesis: NemesisThread, stop: threading.Event, log) -> None:
    """Workers and nemesis run for the time limit; then stop, and the faults applied are printed."""
    for thread in [*workers, nemesis]:
        thread.start()
    stop.wait(time_limit_s)
    stop.set()
    join_or_raise([*workers, nemesis], timeout_s=60, phase="main phase")
    for event in nemesis.applied:
        target = event.get("node") or event.get("spec") or ""
        extra = f" {event['grudge']}" if event.get("grudge") else ""
        role = f" ({event['target']})" if event.get("target") else ""
        say(f"[{event['at_s']:7.2f}s] nemesis {event['f']} {target}{role}{extra}", log)


def join_or_raise(threads: list, timeout_s: float, phase: str) -> None:
    """Joins the threads; a thread that failed or did not stop is a harness error, never a verdict."""
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    problems = [t.error for t in threads if t.error is not None]
    problems += [RuntimeError(f"{t.name} did not stop") for t in threads if t.is_alive()]
    if problems:
        raise RuntimeError(f"{phase} failed: {problems[0]!r}")


def idempotent_count(args) -> int:
    """Idempotent producers among --producers: --idempotent-producers, else the larger half."""
    if args.idempotent_producers is not None:
        return min(args.idempotent_producers, args.producers)
    return args.producers - args.producers // 2


def _run_stream_phases(args, cluster: Cluster, schedule: dict, run_dir: Path, log) -> list:
    """Producers and the consumer group under the schedule; stop producing; heal; drain every producer's
    outstanding deliveries; let the group catch up; final read of every partition to its high_watermark."""
    from jepsen_like.stream import TOPIC, GroupConsumer, StreamProducer, final_read

    producers: list[StreamProducer] = []
    consumers: list[GroupConsumer] = []
    try:
        cluster.start()
        replication_factor = args.replication_factor or (3 if args.nodes >= 3 else 1)
        create_topic(cluster.bootstrap, args.keys, replication_factor, args.unclean, topic_name=TOPIC)
        say(f"cluster up ({cluster.bootstrap}); schedule: {len(schedule['events']) // 2} faults (schedule.json)",
            log)
        with open(run_dir / "history.jsonl", "w") as sink:
            recorder = HistoryRecorder(sink)
            # Ties the history's clock to wall time, so the brokers' log lines can be placed on it.
            recorder.record("nemesis", "info", "wall-clock", {"wall_s": time.time()})
            stop_producing, stop_consuming = threading.Event(), threading.Event()
            client_log = client_logger(run_dir / "clients.log")
            idempotent = idempotent_count(args)
            producers = [StreamProducer(i, idempotent=i < idempotent, partitions=args.keys,
                                        bootstrap=cluster.bootstrap, recorder=recorder, rate_per_s=args.rate,
                                        seed=args.seed, stop_event=stop_producing, client_log=client_log)
                         for i in range(args.producers)]
            consumers = [GroupConsumer(args.producers + i, group_id=f"jl-stream-{run_dir.name}",
                                       bootstrap=cluster.bootstrap, recorder=recorder, stop_event=stop_consuming,
                                       client_log=client_log) for i in range(args.consumers)]
            for consumer in consumers:
                consumer.start()
            nemesis = NemesisThread(schedule, cluster, recorder, time.monotonic(), stop_producing, topic=TOPIC)
            main_phase(args.time_limit, producers, nemesis, stop_producing, log)
            heal_all(cluster, recorder)
            say("healed; draining producers' outstanding deliveries", log)
            undelivered = sum(p.drain() for p in producers)
            for p in producers:
                p.producer.poll(0)
            say(f"drained ({undelivered} never reported); recovering {args.recovery_s}s, then final read", log)
            time.sleep(args.recovery_s)
            stop_consuming.set()
            join_or_raise(consumers, timeout_s=30, phase="consumer group")
            for consumer in consumers:
                consumer.close()
            consumers = []
            result = final_read(cluster.bootstrap, recorder, args.producers + args.consumers, args.keys,
                                time.monotonic() + args.final_time_limit, client_log)
            say(f"final read: high_watermarks {result['high_watermark']} reached {result['complete']}", log)
            return list(recorder.ops)
    finally:
        for consumer in consumers:
            consumer.close()


FENCING_LINE = re.compile(r"^(\S+Z) \S+ \S+: fenced brokers \[([\d, ]*)\]: session expired")


def fencing_report(history, cluster: Cluster) -> dict:
    """Every fencing the controllers logged, on the history's clock, and those of brokers that were neither
    paused nor dead then: the `short_session_on_new_controller` symptom."""
    from jepsen_like.nemesis import fault_windows
    from jepsen_like.stream_checker import unexpected_fencing

    anchor = next((op for op in history if op.f == "wall-clock"), None)
    if anchor is None:
        return {}
    wall_t0_s = anchor.value["wall_s"] - anchor.time_ns / 1e9
    fencings = []
    for name, node in cluster.nodes.items():
        if not node.log_path.exists():
            continue
        for line in node.log_path.read_text(errors="replace").splitlines():
            match = FENCING_LINE.match(line)
            if match and match.group(2).strip():
                at_s = datetime.fromisoformat(match.group(1).replace("Z", "+00:00")).timestamp() - wall_t0_s
                if at_s >= 0:
                    fencings.append({"at_s": round(at_s, 3), "brokers": [int(b) for b in match.group(2).split(",")],
                                     "logged_by": name, "line": line[:200]})
    fencings.sort(key=lambda f: f["at_s"])
    return {"fencings": fencings, "unexpected-fencing": unexpected_fencing(fencings, fault_windows(history))}


def heal_all(cluster: Cluster, recorder: HistoryRecorder) -> None:
    """Jepsen's final generators: heal the network, resume paused and restart dead nodes."""
    if cluster.network is not None and cluster.network.grudge:
        recorder.record("nemesis", "info", "stop-partition", {"final": True})
        cluster.heal_network()
        recorder.record("nemesis", "info", "stop-partition", {"final": True, "done": True})
    recorder.record("nemesis", "info", "heal-extra", {"final": True})
    healed = cluster.heal_extra_faults()
    recorder.record("nemesis", "info", "heal-extra", {"final": True, "done": True, "healed": healed})
    for name, node in cluster.nodes.items():
        node.exit_excused = False
        if node.crashed():
            recorder.record("nemesis", "info", "crashed", {"node": name})
        recorder.record("nemesis", "info", "heal", {"node": name})
        node.heal()


def kind_of(event: dict) -> str | None:
    """The nemesis kind an event of a schedule belongs to (None for healing ops shared by kinds)."""
    if event["f"] in OPENERS:
        return OPENERS[event["f"]]
    return {"stop-partition": "partition", "stop-delay": "delay", "stop-loss": "loss"}.get(event["f"])


def disk_unavailable_reason() -> str | None:
    import os
    import shutil
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    if shutil.which("mount") is None:
        return "mount(8) not installed"
    return None


def acknowledged_tails(ops) -> dict[int, int]:
    """key -> highest offset of an ok send: the final reads must get at least that far."""
    tails: dict[int, int] = {}
    for op in ops:
        if op.f == "send" and op.type == "ok":
            for k, (offset, _value) in op.value:
                if offset is not None:
                    tails[k] = max(tails.get(k, -1), offset)
    return tails
