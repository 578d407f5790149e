"""Issue 4's replication figures: produce throughput at RF 3 next to a single node, and failover time.

The issue asks for two numbers measured on real broker processes (started by bench/cluster.py's ``Cluster``,
so this script owns their PIDs and every node runs the same cluster-mode code path, a single node being a
quorum of one):

1. produce throughput with confluent-kafka (1 KiB records, linger 5 ms, 1 MB batches, ``--partitions`` partitions,
   default 6, records sent to them in turns of 1024) for a
   single node (RF 1, acks=all, idempotent) as the reference, then a 3-node cluster with RF 3 and
   ``min.insync.replicas=2`` at acks=all (idempotent) and at acks=1 (librdkafka refuses idempotence unless
   acks=all, so that one is a plain producer); each the median of ``--repeats`` runs, as MB/s, msg/s, the
   brokers' CPU and the ratio to the single node measured in the same run.  Target: acks=all >= 0.6x.
   Why several partitions by default: librdkafka's idempotent producer keeps one ProduceRequest in flight per
   partition once a batch holds more than five messages (its in-flight limit counts messages), so on one
   partition acks=all measures the replication round trip, not throughput; with six, leaders spread over the
   three brokers and the producer pipelines as it would in a real cluster.  ``--partitions 1`` shows the other.
2. failover time: an idempotent acks=all producer streams small ``seq-N`` records at a steady rate; the
   partition leader is killed with -9, and the time from the kill to the first acknowledgement of a record
   *sent after the kill* is recorded.  The killed broker is restarted and the ISR must be full again before
   the next kill.  Run with tuned timeouts (``--kills``, default 10) and at the defaults (``--default-kills``,
   default 10 too: the issue asks for the median of 10; each waits out the 9 s broker session timeout, so this
   part takes a few minutes).  Targets: <= 2 s tuned,
   <= 10 s at the defaults.  After the kills the partition is read back: every acknowledged record must be
   present exactly once, at the offset its delivery report named.

3. the ceiling (after the throughput runs; ``--skip floor`` leaves it out): bench/replication_floor.py measures
   in a fresh process the CPU of one follower copy of a megabyte through our ReplicaFetchService, both ends,
   and the summary prints the most RF 3 acks=all could reach on these cores if replication cost nothing beyond
   that floor: the single node's client and broker CPU per MB plus two follower copies, next to what RF 3
   acks=all measured per MB.  When the ceiling is below the target, no implementation that moves the follower
   copies through gRPC can show the target on this machine.  It also measures the fsynced write rate the
   brokers' disk sustains (``--disk-seconds``): when the three brokers share that disk, RF 3 writes every
   byte three times to it, so in runs longer than the disk's burst RF 3 gets at most a third of a disk-bound
   single node.

With ``--node-cpus X`` every broker process of every cluster (restarts after a kill included) runs in its own
CPU cgroup limited to X CPUs (bench/cpu_envelope.py), modelling "each broker on its own machine" on a small VM:
the single node gets X CPU, the 3-node cluster 3 x X, so the ratio measures replication rather than three
brokers and the client sharing the same cores.  Each throughput run's JSON line then carries every node's
throttling during the run (``throttle``: CFS periods, throttled periods and %, throttled ms), so a node that
hit its quota shows.  The client is not limited.  No envelope possible (not root, no cpu controller) exits 2.

Output: JSON lines and human lines ("# "), then a summary table.  Slowness never fails the run (2 cores shared
with other work: figures are for notes).  The exit status is non-zero only for a harness failure or a
replication fault: a lost, duplicated or moved acknowledged record, a produce error, or no acknowledgement
within ``--stall-cap-s`` of a kill.

    .venv/bin/python bench/replication.py [--quick] [--size-mib 256] [--repeats 3] [--kills 10] [--default-kills 10]
                                          [--node-cpus 0.5]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(REPO_ROOT / "tests" / "helpers"))
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(BENCH_DIR))


def _load_bench_cluster():
    """bench/cluster.py under another name: ``import cluster`` must keep meaning the kraftpy package."""
    spec = importlib.util.spec_from_file_location("bench_cluster", BENCH_DIR / "cluster.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_cluster"] = module
    spec.loader.exec_module(module)
    return module


bench_cluster = _load_bench_cluster()
from acked_stream import check_acknowledged_exactly_once, read_partition  # noqa: E402
from cluster_process import create_topic  # noqa: E402
from cpu_envelope import CpuEnvelope, EnvelopeError  # noqa: E402
from replication_floor import ceiling, cpu_s_per_mb  # noqa: E402
from throughput import MB, own_cpu_seconds, process_cpu_seconds, throughput_producer_config  # noqa: E402

emit = bench_cluster.emit

THROUGHPUT_TARGET_RATIO = 0.6
FAILOVER_TARGET_TUNED_S = 2.0
FAILOVER_TARGET_DEFAULT_S = 10.0
SEND_INTERVAL_S = 0.004          # failover stream: one record every 4 ms (~250/s), whatever the acks do
ISR_CAP_S = 120.0                # a restarted broker not back in the ISR by then is reported as a stall
SETTLE_S = 1.0                   # production on a full ISR before each kill

TUNED_BROKER = {
    "controller.quorum.election.timeout.ms": "300",
    "controller.quorum.fetch.timeout.ms": "600",
    "broker.session.timeout.ms": "1000",
    "broker.heartbeat.interval.ms": "300",
    "replica.fetch.backoff.ms": "100",
    "replica.fetch.wait.max.ms": "200",
}
# Tuned failover is mostly client-side once the cluster has moved the leader (~1 s after the kill): with
# librdkafka's periodic metadata refresh at 1 s the producer learnt of the new leader up to a second late
# (median 2.1-2.3 s), at 200 ms it is there within ~0.2 s (median 1.1 s).  retry.backoff.max.ms keeps
# librdkafka 2.x's exponential retry backoff from growing past 100 ms meanwhile.
TUNED_PRODUCER = {"retry.backoff.ms": 50, "retry.backoff.max.ms": 100, "topic.metadata.refresh.interval.ms": 200}
TOPIC_CONFIG_RF3 = {"min.insync.replicas": "2"}


class ReplicationFault(Exception):
    """A replication bug seen by the benchmark (lost/duplicated record, produce error, stall)."""


def new_cluster(root: Path, nodes: int, overrides: dict, envelope: CpuEnvelope | None):
    """A bench Cluster whose every broker start (restarts too) lands in its node's CPU envelope, if any."""
    on_spawn = None if envelope is None else (lambda node: envelope.add(node.node_id, node.pid))
    return bench_cluster.Cluster(root, nodes=nodes, overrides=overrides, on_spawn=on_spawn)


# -- partition state through Metadata ---------------------------------------------------------------------------------
class MetadataProbe:
    """One long-lived AdminClient over every node (a dead one is skipped by librdkafka)."""

    def __init__(self, cluster) -> None:
        from confluent_kafka.admin import AdminClient

        everyone = ",".join(node.bootstrap for node in cluster.nodes.values())
        self.admin = AdminClient({"bootstrap.servers": everyone, "reconnect.backoff.max.ms": 500,
                                  "log_level": 2})   # no "connection refused" lines for the killed node

    def partition(self, topic: str) -> tuple[int, list[int]]:
        """(leader, isr) of partition 0; (-1, []) when metadata is unavailable."""
        from confluent_kafka import KafkaException

        try:
            metadata = self.admin.list_topics(topic, timeout=2)
        except KafkaException:
            return -1, []
        described = metadata.topics.get(topic)
        if described is None or described.error is not None or 0 not in described.partitions:
            return -1, []
        partition = described.partitions[0]
        return partition.leader, sorted(partition.isrs)


def wait_partition_ready(probe: MetadataProbe, topic: str, replicas: int, timeout_s: float = 30.0,
                         pump=None) -> float | None:
    """Seconds until partition 0 has a leader and a full ISR (``pump`` runs between probes); None past the cap."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        leader, isr = probe.partition(topic)
        if leader >= 0 and len(isr) >= replicas:
            return time.monotonic() - started
        if pump is not None:
            pump(0.1)
        else:
            time.sleep(0.1)
    return None


# -- part 1: throughput -----------------------------------------------------------------------------------------------
def produce_run(cluster, topic: str, acks: str, idempotent: bool, count: int, msg_size: int,
                max_seconds: float, partitions: int = 1, envelope: CpuEnvelope | None = None) -> dict:
    """One timed produce of ``count`` records (send to last acknowledgement); brokers' and client's CPU %,
    and with an ``envelope`` each node's CPU throttling during the run."""
    from confluent_kafka import Producer

    errors: list[str] = []
    producer = Producer({**throughput_producer_config(cluster.bootstrap, acks, max_seconds,
                                                      lambda err: errors.append(str(err))),
                         "enable.idempotence": idempotent})
    payloads = [random.randbytes(msg_size) for _ in range(1024)]
    producer.list_topics(topic, timeout=10)
    pids = {node_id: node.pid for node_id, node in cluster.nodes.items() if node.is_alive()}
    cpu_before = {node_id: process_cpu_seconds(pid) for node_id, pid in pids.items()}
    client_before = own_cpu_seconds()
    throttle_before = envelope.snapshot() if envelope is not None else None
    started = time.perf_counter()
    deadline = started + max_seconds
    sent, truncated = 0, False
    produce = producer.produce
    while sent < count:
        try:
            produce(topic, payloads[sent & 1023], partition=(sent >> 10) % partitions)
            sent += 1
        except BufferError:
            producer.poll(0.005)
        if sent & 1023 == 0 or not sent:
            producer.poll(0)
            if time.perf_counter() > deadline:
                truncated = True
                break
    remaining = producer.flush(120)
    seconds = time.perf_counter() - started
    throttle = None
    if envelope is not None:
        throttle = {node_id: row for node_id, row in
                    envelope.throttling_since(throttle_before, envelope.snapshot()).items() if node_id in pids}
    broker_cpu = {node_id: round(100 * (process_cpu_seconds(pid) - cpu_before[node_id]) / seconds, 1)
                  for node_id, pid in pids.items()}
    return {"messages": sent, "seconds": round(seconds, 3), "mb_s": sent * msg_size / MB / seconds,
            "msgs_s": sent / seconds, "broker_cpu_pct": broker_cpu,
            "client_cpu_pct": round(100 * (own_cpu_seconds() - client_before) / seconds, 1),
            "errors": len(errors) + remaining, "first_errors": errors[:3], "truncated": truncated,
            **({"throttle": throttle} if throttle is not None else {})}


def throughput_config(cluster, label: str, replicas: int, acks: str, idempotent: bool, args, count: int) -> dict:
    """``args.repeats`` runs, each on a fresh topic; returns the median run (by MB/s) with all runs' MB/s."""
    probe = MetadataProbe(cluster)
    runs = []
    for run in range(1, args.repeats + 1):
        topic = f"tput-{label}-r{run}-{int(time.time() * 1000)}"
        create_topic(cluster.bootstrap, topic, args.partitions, replication_factor=replicas, timeout_s=30,
                     config=TOPIC_CONFIG_RF3 if replicas > 1 else {})
        if wait_partition_ready(probe, topic, replicas) is None:
            raise RuntimeError(f"{topic}: no leader with a full ISR within 30 s")
        result = produce_run(cluster, topic, acks, idempotent, count, args.msg_size, args.max_seconds,
                             args.partitions, args.envelope)
        result.update({"bench": "replication_throughput", "config": label, "run": run, "replicas": replicas,
                       "acks": acks, "idempotent": idempotent, "partitions": args.partitions})
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()}), flush=True)
        runs.append(result)
        cluster.check_alive()
        if result["errors"]:
            raise ReplicationFault(f"{label} run {run}: {result['errors']} records not acknowledged, "
                                   f"e.g. {result['first_errors']}")
    median = sorted(runs, key=lambda r: r["mb_s"])[len(runs) // 2]
    median["all_mb_s"] = [round(r["mb_s"], 1) for r in runs]
    return median


def bench_throughput(root: Path, args, count: int) -> list[dict]:
    results = []
    single = new_cluster(root / "single", 1, args.overrides, args.envelope)
    try:
        single.start()
        results.append(throughput_config(single, "single-rf1-acks-all", 1, "all", True, args, count))
    finally:
        single.stop()
    trio = new_cluster(root / "rf3", 3, args.overrides, args.envelope)
    try:
        trio.start()
        results.append(throughput_config(trio, "3node-rf3-acks-all", 3, "all", True, args, count))
        results.append(throughput_config(trio, "3node-rf3-acks-1", 3, "1", False, args, count))
    finally:
        trio.stop()
    reference = results[0]["mb_s"]
    for result in results:
        result["ratio"] = result["mb_s"] / reference
        target = "" if result is results[0] else (
            f" (target >= {THROUGHPUT_TARGET_RATIO}x: "
            f"{'ok' if result['ratio'] >= THROUGHPUT_TARGET_RATIO else 'BELOW'})" if result["acks"] == "all" else "")
        cpu = ", ".join(f"n{node}={pct:.0f}%" for node, pct in result["broker_cpu_pct"].items())
        emit({"bench": "replication_throughput_median", "config": result["config"], "mb_s": round(result["mb_s"], 1),
              "msgs_s": round(result["msgs_s"]), "ratio": round(result["ratio"], 3), "runs_mb_s": result["all_mb_s"],
              "broker_cpu_pct": result["broker_cpu_pct"], "client_cpu_pct": result["client_cpu_pct"],
              "truncated": result["truncated"], "throttle": result.get("throttle")},
             f"{result['config']:20s} {result['mb_s']:6.1f} MB/s {result['msgs_s']:>8,.0f} msg/s  "
             f"ratio {result['ratio']:.2f}{target} | runs {result['all_mb_s']} | broker CPU {cpu}, client "
             f"{result['client_cpu_pct']:.0f}%" + (" | TRUNCATED (time budget)" if result["truncated"] else ""))
    return results


# -- the floor: what the machine allows at zero overhead ---------------------------------------------------------------
def measure_replica_fetch_floor(mib: float, disk_dir: Path, disk_seconds: float) -> dict:
    """bench/replication_floor.py in a fresh process (no producer threads around): CPU per MiB of one follower
    copy through our ReplicaFetchService, both ends counted; and unless ``disk_seconds`` is 0, the fsynced write
    rate the brokers' disk sustains."""
    command = [sys.executable, str(BENCH_DIR / "replication_floor.py"), "--mib", str(mib)]
    if disk_seconds > 0:
        command += ["--disk-dir", str(disk_dir), "--disk-seconds", str(disk_seconds)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300 + disk_seconds, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"replication_floor.py exited {completed.returncode}: {completed.stderr.strip()[-500:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def bench_ceiling(throughput: list[dict], args, root: Path) -> dict | None:
    """Measures the follower-copy floor (and the disk) and prints the ceiling next to what RF 3 acks=all cost."""
    if not throughput:
        return None
    floor = measure_replica_fetch_floor(args.floor_mib, root, args.disk_seconds)
    bound = ceiling(throughput[0], floor["cpu_s_per_mib"] * MB / (1024 * 1024), len(os.sched_getaffinity(0)),
                    args.node_cpus)
    measured = next((r for r in throughput if r["config"] == "3node-rf3-acks-all"), None)
    if measured is not None:
        client, brokers = cpu_s_per_mb(measured)
        bound["rf3_acks_all_measured_ms_per_mb"] = round((client + brokers) * 1000, 3)
    emit({**bound, "floor": floor},
         f"ceiling at zero replication overhead: {bound['ceiling_mb_s']:.0f} MB/s = {bound['ceiling_ratio']:.2f}x "
         f"single node ({bound['cores']} cores"
         + (f", {args.node_cpus:g} CPU per broker" if args.node_cpus is not None else "")
         + f"; a follower copy through ReplicaFetchService costs >= {bound['follower_copy_floor_ms_per_mb']:.2f} "
         f"CPU-ms/MB; RF 3 >= {bound['rf3_floor_ms_per_mb']:.2f} CPU-ms/MB in all, measured "
         f"{bound.get('rf3_acks_all_measured_ms_per_mb', float('nan')):.2f})")
    disk = floor.get("disk")
    if disk is not None:
        bound["disk_sustained_mb_s"] = disk["sustained_mb_s"]
        bound["disk_first_second_mb_s"] = disk["first_second_mb_s"]
        emit(disk, f"disk under the brokers: {disk['first_second_mb_s']:.0f} MB/s fsynced in its first second, "
                   f"{disk['sustained_mb_s']:.0f} MB/s sustained (last third of {disk['seconds']:.0f} s): three "
                   f"replicas on it cap sustained RF 3 at {disk['sustained_mb_s'] / 3:.0f} MB/s, a third of a "
                   f"disk-bound single node; runs shorter than the burst do not show it")
    return bound


# -- part 2: failover -------------------------------------------------------------------------------------------------
class TimedStream:
    """An idempotent acks=all producer sending ``seq-N`` at a steady rate, timing sends and acknowledgements.

    ``acked`` (seq -> offset) is the shape acked_stream.check_acknowledged_exactly_once reads."""

    def __init__(self, bootstrap: str, topic: str, producer_overrides: dict) -> None:
        from confluent_kafka import Producer

        self.topic = topic
        self.acked: dict[int, int] = {}
        self.failed: dict[int, str] = {}
        self.client_errors: list[str] = []
        self.duplicate_acks: list[int] = []
        self.send_time: list[float] = []
        self.mark = float("inf")               # records sent after this count for first_ack_after_mark
        self.first_ack_after_mark: float | None = None
        self.next_send = time.monotonic()
        config = {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 1,
                  "message.timeout.ms": 300_000, "error_cb": self._on_error,
                  "log_level": 2}   # errors reach error_cb; no per-reconnect log lines for the killed node
        config.update(producer_overrides)
        self.producer = Producer(config)

    def _on_error(self, err) -> None:
        self.client_errors.append(f"{'FATAL ' if err.fatal() else ''}{err}")

    def _on_delivery(self, err, msg) -> None:
        now = time.monotonic()
        seq = int(msg.value().split(b"-")[1])
        if err is not None:
            self.failed[seq] = str(err)
            return
        if seq in self.acked:
            self.duplicate_acks.append(seq)
        self.acked[seq] = msg.offset()
        if self.first_ack_after_mark is None and self.send_time[seq] > self.mark:
            self.first_ack_after_mark = now

    def pump(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        while True:
            now = time.monotonic()
            while self.next_send <= now:
                self.producer.produce(self.topic, value=f"seq-{len(self.send_time)}".encode(), partition=0,
                                      on_delivery=self._on_delivery)
                self.send_time.append(time.monotonic())
                self.next_send += SEND_INTERVAL_S
            self.producer.poll(min(0.002, max(0.0, until - now)))
            if time.monotonic() >= until:
                return

    def set_mark(self) -> None:
        self.next_send = max(self.next_send, time.monotonic())   # no burst of catch-up sends after a pause
        self.mark = time.monotonic()
        self.first_ack_after_mark = None


def one_failover(cluster, probe: MetadataProbe, stream: TimedStream, topic: str, index: int, cap_s: float) -> dict:
    stream.pump(SETTLE_S)
    leader, isr = probe.partition(topic)
    if leader not in cluster.nodes:
        raise RuntimeError(f"kill {index}: no partition leader to kill (metadata says {leader}, isr {isr})")
    victim = cluster.nodes[leader]
    stream.set_mark()
    victim.kill9()
    killed = stream.mark
    while stream.first_ack_after_mark is None and time.monotonic() - killed < cap_s:
        stream.pump(0.01)
    failover_s = None if stream.first_ack_after_mark is None else stream.first_ack_after_mark - killed
    new_leader, _ = probe.partition(topic)
    restarted = time.monotonic()
    victim.spawn()
    isr_full_s = wait_partition_ready(probe, topic, len(cluster.nodes), ISR_CAP_S, pump=stream.pump)
    if isr_full_s is not None:
        isr_full_s = time.monotonic() - restarted
    cluster.check_alive()
    return {"run": index, "killed_leader": leader, "isr_before": isr, "new_leader": new_leader,
            "failover_s": None if failover_s is None else round(failover_s, 3),
            "isr_full_after_restart_s": None if isr_full_s is None else round(isr_full_s, 2)}


def verify_stream(cluster, stream: TimedStream, topic: str) -> list[str]:
    """Problems found: unacknowledged or failed sends, duplicate acks, lost/duplicated/moved records."""
    remaining = stream.producer.flush(60)
    problems = []
    if remaining:
        problems.append(f"{remaining} records still unacknowledged 60 s after the last kill")
    if stream.failed:
        problems.append(f"{len(stream.failed)} produce errors, e.g. {list(stream.failed.items())[:3]}")
    if stream.duplicate_acks:
        problems.append(f"records acknowledged twice: {stream.duplicate_acks[:10]}")
    fatal = [e for e in stream.client_errors if e.startswith("FATAL")]
    if fatal:
        problems.append(f"fatal client errors: {fatal[:3]}")
    records, high_watermark = read_partition(cluster.bootstrap, topic)
    try:
        check_acknowledged_exactly_once(stream, records, high_watermark)
    except AssertionError as exc:
        problems.append(str(exc))
    return problems


def bench_failover(root: Path, label: str, kills: int, broker_overrides: dict, producer_overrides: dict,
                   target_s: float, cap_s: float, envelope: CpuEnvelope | None = None) -> dict:
    cluster = new_cluster(root / f"failover-{label}", 3, broker_overrides, envelope)
    runs: list[dict] = []
    problems: list[str] = []
    try:
        cluster.start()
        topic = f"failover-{label}"
        create_topic(cluster.bootstrap, topic, 1, replication_factor=3, timeout_s=30, config=TOPIC_CONFIG_RF3)
        probe = MetadataProbe(cluster)
        if wait_partition_ready(probe, topic, 3) is None:
            raise RuntimeError(f"{topic}: no leader with a full ISR within 30 s")
        stream = TimedStream(cluster.bootstrap, topic, producer_overrides)
        for index in range(1, kills + 1):
            run = one_failover(cluster, probe, stream, topic, index, cap_s)
            runs.append(run)
            shown = "NO ACK (stall)" if run["failover_s"] is None else f"{run['failover_s']:.2f} s"
            isr_s = run["isr_full_after_restart_s"]
            emit({"bench": "failover", "timeouts": label, **run},
                 f"{label} kill {index}: leader {run['killed_leader']} (isr {run['isr_before']}) -> "
                 f"{run['new_leader']}, first ack of a post-kill record after {shown}; ISR full "
                 f"{'NEVER' if isr_s is None else f'{isr_s:.1f} s'} after the restart")
            if run["failover_s"] is None:
                problems.append(f"kill {index}: no acknowledgement of a post-kill record within {cap_s:.0f} s")
                break
            if run["isr_full_after_restart_s"] is None:
                problems.append(f"kill {index}: restarted node {run['killed_leader']} not back in the ISR "
                                f"within {ISR_CAP_S:.0f} s")
                break
        problems += verify_stream(cluster, stream, topic)
        acked, sent = len(stream.acked), len(stream.send_time)
    except Exception as exc:  # noqa: BLE001 -- reported; brokers stopped below
        problems.append(f"harness: {type(exc).__name__}: {exc}")
        acked = sent = 0
    finally:
        cluster.stop()
    times = [r["failover_s"] for r in runs if r["failover_s"] is not None]
    summary = {"bench": "failover_summary", "timeouts": label, "kills": len(runs), "measured": len(times),
               "median_s": round(statistics.median(times), 3) if times else None,
               "min_s": min(times) if times else None, "max_s": max(times) if times else None,
               "over_target": sum(1 for t in times if t > target_s), "target_s": target_s,
               "sent": sent, "acked": acked, "problems": problems, "work_dir": str(cluster.nodes[1].work_dir.parent)}
    human = (f"failover ({label}), {len(times)} kills: median {summary['median_s']} s, min {summary['min_s']} s, "
             f"max {summary['max_s']} s (target <= {target_s:.0f} s; {summary['over_target']} over); "
             f"{acked} of {sent} records acknowledged, read back: "
             + ("every acknowledged record exactly once at its offset" if not problems else
                "PROBLEMS: " + " | ".join(problems)))
    emit(summary, human)
    return summary


# -- main -------------------------------------------------------------------------------------------------------------
def throttled_pct(result: dict) -> str:
    """Per node, the share of CFS periods in which the node hit its quota ("-" without an envelope)."""
    throttle = result.get("throttle")
    return "-" if throttle is None else "/".join(f"{row['throttled_pct']:.0f}" for row in throttle.values())


def print_table(throughput: list[dict], failovers: list[dict], envelope: CpuEnvelope | None = None,
                bound: dict | None = None) -> None:
    cores = (f"{envelope.describe()}; client unlimited" if envelope is not None else "2 shared cores")
    print(f"#\n# ---- summary (figures for notes; {cores}) ----", flush=True)
    print(f"# {'configuration':22s} {'MB/s':>7s} {'msg/s':>9s} {'ratio':>6s}  broker CPU %"
          + ("  throttled periods %" if envelope is not None else ""), flush=True)
    for r in throughput:
        cpu = "/".join(f"{pct:.0f}" for pct in r["broker_cpu_pct"].values())
        print(f"# {r['config']:22s} {r['mb_s']:7.1f} {r['msgs_s']:9,.0f} {r['ratio']:6.2f}  {cpu}"
              + (f"  {throttled_pct(r):>14s}" if envelope is not None else ""), flush=True)
    if throughput:
        print(f"# target: 3node-rf3-acks-all >= {THROUGHPUT_TARGET_RATIO}x single node", flush=True)
    if bound is not None:
        print(f"# {'ceiling (floor only)':22s} {bound['ceiling_mb_s']:7.1f} {'':9s} {bound['ceiling_ratio']:6.2f}  "
              f"follower copy >= {bound['follower_copy_floor_ms_per_mb']:.2f} CPU-ms/MB; RF 3 acks=all >= "
              f"{bound['rf3_floor_ms_per_mb']:.2f}, measured {bound.get('rf3_acks_all_measured_ms_per_mb', 0):.2f}",
              flush=True)
        if "disk_sustained_mb_s" in bound:
            print(f"# {'disk (fsynced writes)':22s} {bound['disk_sustained_mb_s']:7.1f} sustained, "
                  f"{bound['disk_first_second_mb_s']:.0f} first second: sustained RF 3 <= 1/3 of it", flush=True)
    print(f"# {'failover':22s} {'kills':>5s} {'median':>7s} {'min':>6s} {'max':>6s} {'target':>7s}  verdict",
          flush=True)
    for f in failovers:
        def s(value):
            return "-" if value is None else f"{value:.2f}"
        verdict = "FAULT" if f["problems"] else ("ok" if f["median_s"] is not None and f["median_s"] <= f["target_s"]
                                                 else "over target")
        print(f"# {f['timeouts']:22s} {f['measured']:5d} {s(f['median_s']):>7s} {s(f['min_s']):>6s} "
              f"{s(f['max_s']):>6s} {f['target_s']:6.0f}s  {verdict}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="32 MiB per run, 2 repeats, 3 tuned and 2 default kills")
    parser.add_argument("--size-mib", type=float, help="MiB of record values per throughput run (default 256)")
    parser.add_argument("--msg-size", type=int, default=1024, help="bytes per record value (default 1024)")
    parser.add_argument("--partitions", type=int, default=6,
                        help="partitions of each throughput topic (default 6; see the module docstring)")
    parser.add_argument("--repeats", type=int, help="throughput runs per configuration, median shown (default 3)")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="time budget per throughput run (default 60)")
    parser.add_argument("--kills", type=int, help="leader kills with tuned timeouts (default 10)")
    parser.add_argument("--default-kills", type=int, help="leader kills at default timeouts (default 10)")
    parser.add_argument("--stall-cap-s", type=float, default=60.0,
                        help="no acknowledgement this long after a kill is reported as a stall (default 60)")
    parser.add_argument("--skip", default="",
                        help="comma-separated parts to skip: throughput,floor,tuned,defaults")
    parser.add_argument("--disk-seconds", type=float, default=20.0,
                        help="seconds of fsynced writes measuring the disk after the throughput runs (0: skip)")
    parser.add_argument("--floor-mib", type=float,
                        help="MiB moved by the follower-copy floor measurement (default 256, 64 with --quick)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="broker config for every cluster of the run (repeatable), e.g. replica.fetch.max.bytes")
    parser.add_argument("--node-cpus", type=float, metavar="X",
                        help="run every broker in its own CPU cgroup limited to X CPUs, the same for the single "
                             "node and each cluster node (models one machine per broker; needs root)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (broker logs)")
    args = parser.parse_args(argv)
    args.size_mib = args.size_mib if args.size_mib is not None else (32 if args.quick else 256)
    args.repeats = args.repeats if args.repeats is not None else (2 if args.quick else 3)
    args.floor_mib = args.floor_mib if args.floor_mib is not None else (64 if args.quick else 256)
    kills = args.kills if args.kills is not None else (3 if args.quick else 10)
    default_kills = args.default_kills if args.default_kills is not None else (2 if args.quick else 10)
    skip = {part.strip() for part in args.skip.split(",") if part.strip()}
    args.overrides = dict(item.split("=", 1) for item in args.override)
    count = max(1, int(args.size_mib * 1024 * 1024) // args.msg_size)

    signal.signal(signal.SIGTERM, bench_cluster._raise_interrupt)
    args.envelope = None
    if args.node_cpus is not None:
        try:
            args.envelope = CpuEnvelope(args.node_cpus, range(1, 4))
        except EnvelopeError as exc:
            print(f"# --node-cpus {args.node_cpus:g}: no CPU envelope possible: {exc}", file=sys.stderr, flush=True)
            return 2
    try:
        return run(args, count, kills, default_kills, skip)
    finally:
        if args.envelope is not None:
            leftovers = args.envelope.close()
            if leftovers:
                print(f"# could not remove cgroups {leftovers}", file=sys.stderr, flush=True)


def run(args, count: int, kills: int, default_kills: int, skip: set[str]) -> int:
    root = Path(tempfile.mkdtemp(prefix="kraftpy-bench-replication-"))
    envelope = args.envelope
    emit({"bench": "setup", "work_dir": str(root), "records_per_run": count, "msg_size": args.msg_size,
          "repeats": args.repeats, "kills_tuned": kills, "kills_defaults": default_kills,
          "node_cpus": args.node_cpus, "envelope": envelope.describe() if envelope is not None else None},
         f"work dir {root}; throughput: {count:,} records of {args.msg_size} B per run, median of {args.repeats}; "
         f"failover: {kills} kills tuned, {default_kills} at defaults; "
         + (f"{envelope.describe()}, own cgroup per node, client unlimited" if envelope is not None
            else "brokers and client share all cores"))
    started = time.monotonic()
    ok = True
    throughput: list[dict] = []
    bound: dict | None = None
    failovers: list[dict] = []
    try:
        if "throughput" not in skip:
            throughput = bench_throughput(root, args, count)
            if "floor" not in skip:
                bound = bench_ceiling(throughput, args, root)
        if "tuned" not in skip and kills > 0:
            failovers.append(bench_failover(root, "tuned", kills, {**TUNED_BROKER, **args.overrides}, TUNED_PRODUCER,
                                            FAILOVER_TARGET_TUNED_S, args.stall_cap_s, envelope))
        if "defaults" not in skip and default_kills > 0:
            failovers.append(bench_failover(root, "defaults", default_kills, args.overrides, {},
                                            FAILOVER_TARGET_DEFAULT_S, args.stall_cap_s, envelope))
        ok = not any(f["problems"] for f in failovers)
    except KeyboardInterrupt:
        print("# interrupted; brokers stopped", file=sys.stderr)
        ok = False
    except Exception as exc:  # noqa: BLE001 -- harness error or replication fault: reported, exit 1
        print(f"# bench failed: {type(exc).__name__}: {exc}", flush=True)
        ok = False
    print_table(throughput, failovers, envelope, bound)
    if args.keep or not ok:
        print(f"# broker logs kept in {root}", flush=True)
    else:
        shutil.rmtree(root, ignore_errors=True)
    print(f"# total {time.monotonic() - started:.0f} s", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
