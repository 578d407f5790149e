"""Issue 3's cluster figures: metadata commit latency, election time after a leader kill, and the scale point.

The issue asks for three numbers on the 3-node local cluster, each measured against real broker processes
(started the way ``kraftpy local-cluster`` starts them, but by this script so that it owns their PIDs):

1. metadata commit latency: ``--topics`` single-partition RF=1 topics created one CreateTopics request at a
   time (the controller answers only after the records commit and are applied); each request's latency from
   send to response, as p50/p99/max and topics/s;
2. election time: ``--elections`` times, kill -9 the quorum leader, then poll the survivors' describe-quorum
   over gRPC every ~20 ms until one reports a new leader with a higher epoch; the killed node is restarted
   and must rejoin (caught up in the quorum and unfenced as a broker) before the next kill;
3. scale point: on a fresh cluster, topics totalling ``--partitions`` partitions with RF 3, then each broker's
   RSS (VmRSS, VmHWM) and open file descriptors, and the time a kill -9'd, restarted broker takes to serve
   again (ApiVersions answered, ``/readyz`` 200, and its own Metadata listing every partition with a leader
   and every broker).

Output: one JSON line per figure, each followed by a human line starting with "# " that shows the target.
Slowness never fails the run.  The exit status is non-zero only when something did not happen at all within
its cap (no leader elected, a node never rejoined, a broker died, a topic creation was refused).

    .venv/bin/python bench/cluster.py [--quick] [--topics 1000] [--elections 10] [--partitions 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests" / "helpers"))
sys.path.insert(0, str(REPO_ROOT))

from broker_process import BrokerProcess, _die_with_parent, free_port  # noqa: E402

ELECTION_TARGET_S = 3.0
RSS_TARGET_BYTES = 1 << 30
POLL_INTERVAL_S = 0.02
ELECTION_CAP_S = 30.0        # no leader within this is a failure, not slowness
REJOIN_CAP_S = 120.0
SERVE_CAP_S = 900.0          # a restarted node that does not serve in 15 min is reported as such
KILL_SETTLE_S = 1.0
SCALE_PREFIX = "scale-"          # after a rejoin, before the next kill (lets heartbeats settle)


# -- processes ----------------------------------------------------------------------------------------------------
def _child_setup() -> None:
    """Before exec: die with the harness, and open as many files as the hard limit allows."""
    _die_with_parent()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def raise_nofile(limit: int) -> str | None:
    """Sets this process's (and so the brokers') RLIMIT_NOFILE to ``limit``; the reason when not allowed."""
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
        return None
    except (ValueError, OSError) as exc:   # above the hard limit without CAP_SYS_RESOURCE
        return str(exc)


class Node(BrokerProcess):
    """A BrokerProcess whose child gets the raised fd limit, and whose start may skip the readiness wait.

    ``on_spawn``, when set, is called with the node right after each process start (restarts included),
    before the broker is ready: bench/replication.py puts the process into its CPU envelope there."""

    def __init__(self, *args, controller_port: int, metrics_port: int, on_spawn=None, **kwargs) -> None:
        self.controller_port = controller_port
        self.metrics_port = metrics_port
        self.on_spawn = on_spawn
        super().__init__(*args, **kwargs)

    def spawn(self) -> float:
        """Starts the process; returns the monotonic time just before Popen."""
        if self.is_alive():
            raise RuntimeError(f"{self.name} already running as pid {self.pid}")
        self.starts += 1
        env = dict(os.environ)
        env.pop("KRAFTPY_LOG_DIRS", None)
        env.setdefault("PYTHONUNBUFFERED", "1")
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== bench: start #{self.starts} of {self.name} at {time.time():.3f}\n".encode())
            log.flush()
            started = time.monotonic()
            self.process = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=str(REPO_ROOT), env=env, start_new_session=True, preexec_fn=_child_setup)
        if self.on_spawn is not None:
            try:
                self.on_spawn(self)
            except BaseException:
                self.kill9()          # e.g. not in its CPU envelope: must not run as if it were
                raise
        return started

    def start(self, timeout_s: float = 60.0) -> None:
        self.spawn()
        self._wait_ready(timeout_s)

    def readyz(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/readyz", timeout=0.5) as reply:
                return reply.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def api_versions_ok(self) -> bool:
        from broker_process import probe_api_versions
        try:
            probe_api_versions(self.host, self.port, timeout_s=0.5)
            return True
        except (OSError, Exception):  # noqa: BLE001 -- any failure means "not yet"
            return False

    def memory(self) -> dict:
        """VmRSS, VmHWM (bytes), open fds and threads of the running process."""
        pid = self.pid
        status = {}
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                status[key] = value.strip()
        kinds: dict[str, int] = {}
        fd_dir = f"/proc/{pid}/fd"
        for fd in os.listdir(fd_dir):
            with contextlib.suppress(OSError):   # closed meanwhile
                kind = _fd_kind(os.readlink(f"{fd_dir}/{fd}"))
                kinds[kind] = kinds.get(kind, 0) + 1
        fds = sum(kinds.values())
        limits = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        return {"node": self.node_id, "pid": pid, "rss_bytes": int(status["VmRSS"].split()[0]) * 1024,
                "hwm_bytes": int(status["VmHWM"].split()[0]) * 1024, "fds": fds, "fd_soft_limit": limits[0],
                "threads": int(status["Threads"]), "fd_kinds": dict(sorted(kinds.items()))}

    def log_mentions(self, needle: str) -> int:
        try:
            return self.log_path.read_text(errors="replace").count(needle)
        except FileNotFoundError:
            return 0


def _fd_kind(target: str) -> str:
    """What an open fd points at: a segment file type by suffix, a directory, a socket, a pipe, or other."""
    for prefix in ("socket", "pipe", "anon_inode"):
        if target.startswith(prefix):
            return prefix
    if os.path.isdir(target):
        return "dir"
    suffix = target.rsplit(".", 1)[-1] if "." in os.path.basename(target) else os.path.basename(target)
    return suffix if suffix in ("log", "index", "timeindex", "snapshot") else "other"


class Cluster:
    """Three combined broker+controller nodes on loopback, one fresh cluster id, in ``root``.

    ``on_spawn(node)`` is handed to every Node (see Node)."""

    def __init__(self, root: Path, nodes: int = 3, overrides: dict[str, str] | None = None,
                 on_spawn=None) -> None:
        from cluster.storage.meta_properties import write_meta_properties

        self.cluster_id = "bench-" + uuid.uuid4().hex[:12]
        controller_ports = [free_port() for _ in range(nodes)]
        self.voters = ",".join(f"{i + 1}@127.0.0.1:{port}" for i, port in enumerate(controller_ports))
        self.nodes: dict[int, Node] = {}
        for i in range(nodes):
            node_id = i + 1
            metrics_port = free_port()
            props = {"controller.quorum.voters": self.voters, "process.roles": "broker,controller",
                     "metrics.listener": f"127.0.0.1:{metrics_port}", "num.partitions": "1",
                     "auto.create.topics.enable": "false"}
            props.update(overrides or {})
            node = Node(root / f"node-{node_id}", node_id=node_id, name=f"node-{node_id}", overrides=props,
                        controller_port=controller_ports[i], metrics_port=metrics_port, on_spawn=on_spawn)
            write_meta_properties(str(node.data_dir), self.cluster_id, node_id)
            self.nodes[node_id] = node
        self._channels: dict[int, object] = {}

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes.values() if node.is_alive())

    def start(self, timeout_s: float = 60.0) -> None:
        for node in self.nodes.values():
            node.spawn()
        for node in self.nodes.values():
            node._wait_ready(timeout_s)
        deadline = time.monotonic() + timeout_s
        while not self.all_brokers_live():
            if time.monotonic() > deadline:
                raise RuntimeError("the brokers never all registered and unfenced")
            self.check_alive()
            time.sleep(0.2)

    def stop(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        for node in self.nodes.values():
            if node.is_alive():
                node.process.send_signal(signal.SIGTERM)
        for node in self.nodes.values():
            node.stop(timeout_s=15)

    def check_alive(self) -> None:
        for node in self.nodes.values():
            if node.process is not None and node.process.poll() is not None:
                raise RuntimeError(f"{node.name} died with status {node.process.returncode}; log tail:\n"
                                   f"{node.log_tail(3000)}")

    # -- quorum over gRPC --------------------------------------------------------------------------------------
    def _call(self, node_id: int, timeout_s: float = 0.3) -> dict | None:
        """describe_quorum on one voter: its reply dict, or None when it does not answer."""
        import grpc

        from cluster.transport.controller_grpc import call_sync
        channel = self._channels.get(node_id)
        if channel is None:
            channel = grpc.insecure_channel(f"127.0.0.1:{self.nodes[node_id].controller_port}")
            self._channels[node_id] = channel
        try:
            return call_sync(channel, "describe_quorum", {}, cluster_id=None, source_id=None,
                             timeout_s=timeout_s).as_dict()
        except grpc.RpcError:
            return None

    def forget_channel(self, node_id: int) -> None:
        channel = self._channels.pop(node_id, None)
        if channel is not None:
            channel.close()

    def quorum(self, timeout_s: float = 15.0) -> dict:
        """The active controller's quorum view (leader_id, leader_epoch, high_watermark, voters)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for node_id, node in self.nodes.items():
                if not node.is_alive():
                    continue
                reply = self._call(node_id)
                if reply is not None and reply["error_code"] == 0:
                    return reply["result"]
            time.sleep(POLL_INTERVAL_S)
        raise RuntimeError(f"no active controller within {timeout_s} s")

    # -- brokers in metadata -------------------------------------------------------------------------------------
    def all_brokers_live(self, via: Node | None = None) -> bool:
        return self.metadata_view(via or next(n for n in self.nodes.values() if n.is_alive()))[0] == set(self.nodes)

    def metadata_view(self, via: Node, topics: bool = False) -> tuple[set[int], int, int]:
        """(broker ids, scale-point partitions, those with a leader) in ``via``'s own Metadata response."""
        async def ask():
            from cluster.client import KafkaClient
            async with KafkaClient(via.bootstrap, client_id="bench-cluster", retries=0,
                                   connect_timeout_ms=1000, request_timeout_ms=30_000) as client:
                return await client.metadata(None if topics else [])

        try:
            result = asyncio.run(ask())
        except Exception:  # noqa: BLE001 -- not serving yet
            return set(), 0, 0
        partitions = led = 0
        for name, topic in result.topics.items():
            if not name.startswith(SCALE_PREFIX):
                continue
            partitions += len(topic.partitions)
            led += sum(1 for p in topic.partitions.values() if p.leader_id >= 0)
        return set(result.brokers), partitions, led


# -- output -----------------------------------------------------------------------------------------------------------
def emit(record: dict, human: str) -> None:
    print(json.dumps(record), flush=True)
    print("# " + human, flush=True)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def mib(value: int) -> str:
    return f"{value / (1 << 20):.0f} MiB"


# -- part 1: metadata commit latency ----------------------------------------------------------------------------------
def bench_metadata_commit(cluster: Cluster, topics: int) -> dict:
    from cluster.client import KafkaClient, NewTopic

    async def run() -> list[float]:
        latencies = []
        async with KafkaClient(cluster.bootstrap, client_id="bench-create", request_timeout_ms=30_000) as client:
            for i in range(topics):
                topic = NewTopic(f"commit-{i:05d}", 1, 1, {})
                sent = time.perf_counter()
                await client.create_topics([topic], timeout_ms=30_000)
                latencies.append(time.perf_counter() - sent)
        return latencies

    started = time.monotonic()
    latencies = asyncio.run(run())
    elapsed = time.monotonic() - started
    record = {"bench": "metadata_commit", "topics": topics, "p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
              "p99_ms": round(percentile(latencies, 0.99) * 1000, 2), "max_ms": round(max(latencies) * 1000, 2),
              "mean_ms": round(statistics.fmean(latencies) * 1000, 2), "topics_per_s": round(topics / elapsed, 1)}
    emit(record, f"metadata commit latency, {topics} CreateTopics (1 partition, RF 1) one at a time: "
                 f"p50 {record['p50_ms']} ms, p99 {record['p99_ms']} ms, max {record['max_ms']} ms, "
                 f"{record['topics_per_s']} topics/s (no numeric target; Kafka KRaft: a few ms p50)")
    return record


# -- part 2: elections ------------------------------------------------------------------------------------------------
def wait_rejoined(cluster: Cluster, node: Node, cap_s: float) -> float | None:
    """Seconds until ``node`` is caught up in the quorum (lag 0) and listed as a live broker; None past the cap."""
    started = time.monotonic()
    while time.monotonic() - started < cap_s:
        cluster.check_alive()
        try:
            info = cluster.quorum(timeout_s=2.0)
        except RuntimeError:
            continue
        lag = {replica: info["high_watermark"] - leo for replica, leo, _ms in info["voters"]}
        if lag.get(node.node_id, 1) <= 0 and cluster.all_brokers_live(via=node):
            return time.monotonic() - started
        time.sleep(0.1)
    return None


def one_election(cluster: Cluster, index: int) -> dict:
    before = cluster.quorum()
    old_leader, old_epoch = before["leader_id"], before["leader_epoch"]
    victim = cluster.nodes[old_leader]
    victim.kill9()
    killed = time.monotonic()
    cluster.forget_channel(old_leader)
    survivors = [n for n in cluster.nodes if n != old_leader]
    elected = new_leader = new_epoch = None
    while time.monotonic() - killed < ELECTION_CAP_S:
        for node_id in survivors:
            reply = cluster._call(node_id, timeout_s=0.2)
            if reply is None:
                continue
            if reply["error_code"] == 0 and reply["result"]["leader_epoch"] > old_epoch:
                new_leader, new_epoch = reply["result"]["leader_id"], reply["result"]["leader_epoch"]
            elif reply.get("leader_id") not in (None, -1, old_leader):
                new_leader = reply["leader_id"]   # a follower already names the new leader
            if new_leader is not None:
                elected = time.monotonic() - killed
                break
        if elected is not None:
            break
        time.sleep(POLL_INTERVAL_S)
    victim.start()
    rejoin_s = wait_rejoined(cluster, victim, REJOIN_CAP_S)
    record = {"bench": "election", "run": index, "killed_leader": old_leader, "old_epoch": old_epoch,
              "new_leader": new_leader, "new_epoch": new_epoch,
              "election_s": None if elected is None else round(elected, 3),
              "rejoin_s": None if rejoin_s is None else round(rejoin_s, 2)}
    shown = "NO LEADER" if elected is None else f"{elected:.2f} s"
    emit(record, f"election {index}: killed leader {old_leader} (epoch {old_epoch}) -> new leader {new_leader} "
                 f"in {shown} (target <= {ELECTION_TARGET_S:.0f} s); restarted node rejoined in "
                 f"{'NEVER' if rejoin_s is None else f'{rejoin_s:.2f} s'}")
    return record


def bench_elections(cluster: Cluster, count: int) -> tuple[dict, bool]:
    runs = []
    for index in range(1, count + 1):
        runs.append(one_election(cluster, index))
        if runs[-1]["election_s"] is None or runs[-1]["rejoin_s"] is None:
            break
        time.sleep(KILL_SETTLE_S)
    times = [r["election_s"] for r in runs if r["election_s"] is not None]
    ok = len(times) == count and all(r["rejoin_s"] is not None for r in runs)
    summary = {"bench": "election_summary", "runs": len(runs), "elected": len(times),
               "median_s": round(statistics.median(times), 3) if times else None,
               "max_s": max(times) if times else None, "min_s": min(times) if times else None,
               "over_target": sum(1 for t in times if t > ELECTION_TARGET_S)}
    if times:
        emit(summary, f"election after kill -9 of the quorum leader, {len(times)} runs: median "
                      f"{summary['median_s']:.2f} s, min {summary['min_s']:.2f} s, max {summary['max_s']:.2f} s "
                      f"(target <= {ELECTION_TARGET_S:.0f} s; {summary['over_target']} over)")
    else:
        emit(summary, "election: no leader was elected")
    return summary, ok


# -- part 3: the scale point ------------------------------------------------------------------------------------------
def memory_report(cluster: Cluster, stage: str) -> list[dict]:
    rows = []
    for node in cluster.nodes.values():
        if node.is_alive():
            row = {"bench": "scale_memory", "stage": stage, **node.memory()}
            rows.append(row)
            verdict = "ok" if row["rss_bytes"] <= RSS_TARGET_BYTES else "OVER TARGET"
            emit(row, f"{stage}: node {row['node']} RSS {mib(row['rss_bytes'])} (peak {mib(row['hwm_bytes'])}; "
                      f"target <= 1024 MiB: {verdict}), {row['fds']} open fds (limit {row['fd_soft_limit']}; {row['fd_kinds']}), "
                      f"{row['threads']} threads")
    return rows


def create_scale_topics(cluster: Cluster, partitions: int, per_topic: int, replication_factor: int) -> dict:
    """Creates the scale-point topics one CreateTopics at a time; stops at the first refusal or broker death."""
    from cluster.client import KafkaClient, NewTopic

    counts = [per_topic] * (partitions // per_topic) + ([partitions % per_topic] if partitions % per_topic else [])
    latencies: list[float] = []
    failure: list[str] = []

    async def run() -> None:
        async with KafkaClient(cluster.bootstrap, client_id="bench-scale", request_timeout_ms=120_000) as client:
            for i, count in enumerate(counts):
                sent = time.perf_counter()
                try:
                    await client.create_topics([NewTopic(f"{SCALE_PREFIX}{i:04d}", count, replication_factor, {})],
                                               timeout_ms=120_000)
                except Exception as exc:  # noqa: BLE001 -- reported as the scale point's finding
                    failure.append(f"topic {i} ({count} partitions): {type(exc).__name__}: {exc}")
                    return
                latencies.append(time.perf_counter() - sent)
                if any(not node.is_alive() for node in cluster.nodes.values()):
                    failure.append(f"a broker died after topic {i}")
                    return

    started = time.monotonic()
    asyncio.run(run())
    elapsed = time.monotonic() - started
    created = sum(counts[:len(latencies)])
    record = {"bench": "scale_create", "topics": len(latencies), "partitions": created,
              "replication_factor": replication_factor, "seconds": round(elapsed, 1),
              "p50_ms": round(percentile(latencies, 0.5) * 1000, 1) if latencies else None,
              "max_ms": round(max(latencies) * 1000, 1) if latencies else None,
              "error": failure[0] if failure else None}
    human = (f"scale point: created {len(latencies)} topics = {created} partitions (RF {replication_factor}) in "
             f"{elapsed:.1f} s (per CreateTopics of {per_topic} partitions: p50 {record['p50_ms']} ms, "
             f"max {record['max_ms']} ms)")
    if failure:
        human += f"; STOPPED: {failure[0]}"
    emit(record, human)
    return record


def wait_metadata_complete(cluster: Cluster, partitions: int, cap_s: float) -> float | None:
    """Seconds until every node's Metadata lists all partitions with a leader and all brokers."""
    started = time.monotonic()
    pending = set(cluster.nodes)
    while pending and time.monotonic() - started < cap_s:
        cluster.check_alive()
        for node_id in sorted(pending):
            brokers, total, led = cluster.metadata_view(cluster.nodes[node_id], topics=True)
            if brokers == set(cluster.nodes) and total >= partitions and led >= partitions:
                pending.discard(node_id)
        time.sleep(0.2)
    return None if pending else time.monotonic() - started


def restart_to_serving(cluster: Cluster, node: Node, partitions: int) -> dict:
    """kill -9 ``node``, restart it at once, and time each milestone from the restart."""
    node.kill9()
    started = node.spawn()
    milestones: dict[str, float | None] = {"api_versions_s": None, "readyz_s": None, "metadata_complete_s": None}
    last_view = (set(), 0, 0)
    while time.monotonic() - started < SERVE_CAP_S:
        cluster.check_alive()
        now = time.monotonic() - started
        if milestones["api_versions_s"] is None and node.api_versions_ok():
            milestones["api_versions_s"] = round(time.monotonic() - started, 2)
        if milestones["readyz_s"] is None and node.readyz():
            milestones["readyz_s"] = round(time.monotonic() - started, 2)
        if milestones["api_versions_s"] is not None:
            last_view = cluster.metadata_view(node, topics=True)
            brokers, total, led = last_view
            if brokers == set(cluster.nodes) and total >= partitions and led >= partitions:
                milestones["metadata_complete_s"] = round(time.monotonic() - started, 2)
        if all(value is not None for value in milestones.values()):
            break
        time.sleep(max(0.0, 0.1 - (time.monotonic() - started - now)))
    record = {"bench": "scale_restart", "node": node.node_id, **milestones,
              "last_metadata_view": {"brokers": sorted(last_view[0]), "partitions": last_view[1],
                                     "with_leader": last_view[2]}}

    def show(value):
        return "NOT WITHIN CAP" if value is None else f"{value:.2f} s"

    emit(record, f"restart of node {node.node_id} after kill -9 with {partitions} partitions: ApiVersions after "
                 f"{show(milestones['api_versions_s'])}, /readyz 200 after {show(milestones['readyz_s'])}, serves "
                 f"Metadata with all partitions and brokers after {show(milestones['metadata_complete_s'])} "
                 f"(no numeric target)")
    return record


def fd_projection(cluster: Cluster, idle: list[dict], partitions: int, replication_factor: int) -> None:
    """Open fds per hosted replica, measured, and what the whole scale point would need per broker."""
    idle_fds = {row["node"]: row["fds"] for row in idle}
    for node in cluster.nodes.values():
        if not node.is_alive():
            continue
        replicas = sum(1 for entry in os.scandir(node.data_dir) if entry.name.startswith(SCALE_PREFIX))
        if not replicas:
            continue
        per_replica = (node.memory()["fds"] - idle_fds.get(node.node_id, 0)) / replicas
        needed = per_replica * partitions * replication_factor / len(cluster.nodes) + idle_fds.get(node.node_id, 0)
        limit = resource.prlimit(node.pid, resource.RLIMIT_NOFILE)[0]
        emit({"bench": "scale_fd_projection", "node": node.node_id, "replicas_hosted": replicas,
              "fds_per_replica": round(per_replica, 2), "fds_needed": round(needed), "fd_limit": limit},
             f"node {node.node_id}: {per_replica:.2f} open fds per hosted replica ({replicas} replicas); "
             f"{partitions} partitions RF {replication_factor} need ~{needed:.0f} fds per broker, limit {limit}"
             + (" -> DOES NOT FIT" if needed > limit else ""))


def report_scale_failure(cluster: Cluster, create: dict) -> dict:
    """The brokers' state when the scale point could not be reached: alive?, RSS and fds, EMFILE in the logs."""
    alive = {n.node_id: n.is_alive() for n in cluster.nodes.values()}
    rows = memory_report(cluster, f"failed at {create['partitions']} partitions")
    emfile = {n.node_id: n.log_mentions("Too many open files") + n.log_mentions("File descriptor limit reached")
              for n in cluster.nodes.values()}
    summary = {"bench": "scale_summary", "reached": False, "partitions_created": create["partitions"],
               "error": create["error"], "alive": alive, "fd_errors_in_logs": emfile,
               "max_fds": max((r["fds"] for r in rows), default=None),
               "max_rss_bytes": max((r["rss_bytes"] for r in rows), default=None)}
    emit(summary, f"scale point NOT reached: {create['partitions']} partitions created, then {create['error']}; "
                  f"brokers alive {alive}; fd-limit errors in logs {emfile}")
    return summary


def bench_scale(root: Path, partitions: int, per_topic: int, replication_factor: int) -> tuple[dict, bool]:
    cluster = Cluster(root / "scale")
    ok = True
    try:
        cluster.start()
        idle = memory_report(cluster, "idle")
        create = create_scale_topics(cluster, partitions, per_topic, replication_factor)
        fd_projection(cluster, idle, partitions, replication_factor)
        if create["error"]:
            return report_scale_failure(cluster, create), False
        visible = wait_metadata_complete(cluster, partitions, cap_s=300)
        emit({"bench": "scale_visible", "seconds_after_create": None if visible is None else round(visible, 2)},
             f"all {partitions} partitions listed with leaders by every broker "
             f"{'NOT within 300 s' if visible is None else f'{visible:.2f} s after the last CreateTopics answered'}")
        rows = memory_report(cluster, f"{partitions} partitions RF {replication_factor}")
        leader = cluster.quorum()["leader_id"]
        victim = next(n for n in cluster.nodes.values() if n.node_id != leader)   # not the quorum leader:
        restart = restart_to_serving(cluster, victim, partitions)                 # no election mixed in
        after = memory_report(cluster, "after the restart")
        emfile = {n.node_id: n.log_mentions("Too many open files") + n.log_mentions("File descriptor limit reached")
                  for n in cluster.nodes.values()}
        if any(emfile.values()):
            emit({"bench": "scale_fd_errors", "too_many_open_files": emfile},
                 f"brokers logged fd-limit errors: {emfile}")
        ok = visible is not None and restart["metadata_complete_s"] is not None
        summary = {"bench": "scale_summary", "reached": True, "partitions": partitions, "replication_factor": replication_factor,
                   "create_s": create["seconds"], "max_rss_bytes": max(r["rss_bytes"] for r in rows + after),
                   "max_hwm_bytes": max(r["hwm_bytes"] for r in rows + after),
                   "max_fds": max(r["fds"] for r in rows + after), "restart_serve_s": restart["metadata_complete_s"],
                   "too_many_open_files": emfile}
        emit(summary, f"scale point summary: max RSS {mib(summary['max_rss_bytes'])}, max peak RSS "
                      f"{mib(summary['max_hwm_bytes'])} (target <= 1024 MiB), max fds {summary['max_fds']}, "
                      f"restarted node serves after {restart['metadata_complete_s']} s")
        return summary, ok
    except Exception as exc:  # noqa: BLE001 -- reported; the brokers are stopped below
        emit({"bench": "scale_error", "error": str(exc)[:2000]}, f"scale point failed: {exc}")
        return {}, False
    finally:
        cluster.stop()


# -- main -------------------------------------------------------------------------------------------------------------
def _raise_interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 topics, 3 elections, 1,000 partitions")
    parser.add_argument("--topics", type=int, help="part 1: single-partition topics to create (default 1000)")
    parser.add_argument("--elections", type=int, help="part 2: leader kills (default 10)")
    parser.add_argument("--partitions", type=int, help="part 3: total partitions at the scale point (default 10000)")
    parser.add_argument("--partitions-per-topic", type=int, default=100)
    parser.add_argument("--replication-factor", type=int, default=3)
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: commit,election,scale")
    parser.add_argument("--nofile", type=int, help="set RLIMIT_NOFILE (soft and hard) to this first; above the "
                        "current hard limit needs CAP_SYS_RESOURCE (default: brokers' soft limit raised to the hard)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (broker logs)")
    args = parser.parse_args(argv)
    topics = args.topics if args.topics is not None else (100 if args.quick else 1000)
    elections = args.elections if args.elections is not None else (3 if args.quick else 10)
    partitions = args.partitions if args.partitions is not None else (1000 if args.quick else 10_000)
    skip = {part.strip() for part in args.skip.split(",") if part.strip()}

    signal.signal(signal.SIGTERM, _raise_interrupt)
    root = Path(tempfile.mkdtemp(prefix="kraftpy-bench-cluster-"))
    nofile_error = raise_nofile(args.nofile) if args.nofile else None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    emit({"bench": "setup", "work_dir": str(root), "fd_limit": [soft, hard], "nofile_error": nofile_error,
          "cpus": os.cpu_count(), "topics": topics, "elections": elections, "partitions": partitions},
         f"work dir {root}; fd limit soft {soft} hard {hard} (brokers get the hard limit)"
         + (f"; --nofile {args.nofile} refused: {nofile_error}" if nofile_error else "") + f"; {os.cpu_count()} CPUs")
    ok = True
    started = time.monotonic()
    cluster = None
    try:
        if "commit" not in skip or "election" not in skip:
            cluster = Cluster(root / "quorum")
            cluster.start()
            if "commit" not in skip and topics > 0:
                bench_metadata_commit(cluster, topics)
            if "election" not in skip and elections > 0:
                _summary, elections_ok = bench_elections(cluster, elections)
                ok = ok and elections_ok
            cluster.stop()
            cluster = None
        if "scale" not in skip and partitions > 0:
            _summary, scale_ok = bench_scale(root, partitions, args.partitions_per_topic, args.replication_factor)
            ok = ok and scale_ok
    except KeyboardInterrupt:
        print("# interrupted; stopping the brokers", file=sys.stderr)
        ok = False
    except Exception as exc:  # noqa: BLE001 -- harness error: reported, brokers still stopped below
        print(f"# bench failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        ok = False
    finally:
        if cluster is not None:
            cluster.stop()
        if args.keep or not ok:
            print(f"# broker logs kept in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(f"# total {time.monotonic() - started:.0f} s", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
