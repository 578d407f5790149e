"""The cluster under test: N broker processes, their addresses, their quorum, and the network between them.

The harness needs one object to ask "start everyone", "who leads the metadata quorum now", "cut these links",
"heal everything" without caring whether the nodes live in network namespaces (root: each node its own
namespace, address and hostname; partitions possible) or on loopback (127.0.0.<i>, no partitions: the mode
says so and the partition nemesis is skipped).  With more than one node every node is a voter of the
metadata quorum (`controller.quorum.voters`), formatted with one shared cluster id (Kafka's
`meta.properties`, written here as the documented three-line file: the harness imports nothing private).
Leader discovery goes through the public CLI, `python -m cluster cluster describe-quorum --json`.
The fault mechanisms a run needs (`features`: clock, disk, lose-unfsynced, delay, loss) are set up here
too: clock-offset files and the power-loss hook are broker config keys (kraftpy.test.*), the disk is a
tmpfs mounted over each data dir, packet faults live in the namespaces (faults.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

from jepsen_like.faults import ClockControl, DiskControl, PacketControl
from jepsen_like.netns import Network, unavailable_reason
from jepsen_like.node import BrokerNode, free_port

KAFKA_PORT = 9092          # inside a namespace every node has its own port space
CONTROLLER_PORT = 9093


class ClusterError(RuntimeError):
    pass


def write_meta_properties(log_dir: Path, cluster_id: str, node_id: int) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / "meta.properties"
    if not path.exists():
        path.write_text(f"version=1\ncluster.id={cluster_id}\nnode.id={node_id}\n")


class Cluster:
    def __init__(self, run_dir: Path, nodes: int, *, overrides: dict[str, str], repo_root: Path,
                 use_netns: bool = True, partition_backend: str = "auto", features: frozenset = frozenset(),
                 fsync_delay_ms: int = 0, disk_mb: int = 64, seed: int = 0) -> None:
        self.names = [f"n{i}" for i in range(1, nodes + 1)]
        self.network: Network | None = None
        reason = unavailable_reason() if use_netns else "--no-netns"
        self.netns_skipped_reason = reason
        if reason is None:
            self.network = Network(self.names, backend=partition_backend)
            hosts = dict(self.network.addresses)
            kafka_ports = {n: KAFKA_PORT for n in self.names}
            controller_ports = {n: CONTROLLER_PORT for n in self.names}
        else:
            hosts = {n: f"127.0.0.{i}" for i, n in enumerate(self.names, 1)}
            kafka_ports = {n: free_port(hosts[n]) for n in self.names}
            controller_ports = {n: free_port(hosts[n]) for n in self.names}
        self.cluster_id = "jl-" + uuid.uuid4().hex[:16]
        self.voters = ",".join(f"{i}@{hosts[n]}:{controller_ports[n]}" for i, n in enumerate(self.names, 1))
        self.nodes: dict[str, BrokerNode] = {}
        for i, name in enumerate(self.names, 1):
            node_overrides = dict(overrides)
            if "clock" in features:
                node_overrides["kraftpy.test.clock.offset.file"] = str(run_dir / name / "clock-offset-ms")
            if "lose-unfsynced" in features:
                node_overrides["kraftpy.test.lose.unsynced.on.crash"] = "true"
                if fsync_delay_ms:
                    node_overrides["kraftpy.test.fsync.delay.ms"] = str(fsync_delay_ms)
            if nodes > 1:
                node_overrides.update({"controller.quorum.voters": self.voters,
                                       "process.roles": "broker,controller",
                                       "offsets.topic.replication.factor": str(min(3, nodes))})
            node = BrokerNode(name, i, run_dir / name, host=hosts[name], port=kafka_ports[name],
                              overrides=node_overrides, repo_root=repo_root,
                              exec_prefix=self.network.exec_prefix(name) if self.network else None)
            if nodes > 1:
                write_meta_properties(node.data_dir, self.cluster_id, i)
            self.nodes[name] = node
        self.clock = ClockControl({n: node.node_dir for n, node in self.nodes.items()}) if "clock" in features \
            else None
        self.disk = DiskControl({n: node.data_dir for n, node in self.nodes.items()}, disk_mb) \
            if "disk" in features else None
        self.packets = PacketControl(self.network, run_dir, seed) if self.network is not None else None

    # -- lifecycle ------------------------------------------------------------------------------------------

    @property
    def partitions_available(self) -> bool:
        return self.network is not None and len(self.names) > 1

    @property
    def mode(self) -> str:
        if self.network is not None:
            return (f"network namespaces ({self.network.prefix}-*, 198.18.{self.network.net}.0/24, "
                    f"partition backend {self.network.backend})")
        return f"loopback 127.0.0.x (no network namespaces: {self.netns_skipped_reason})"

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes.values())

    def start(self, timeout_s: float = 60.0) -> None:
        if self.network is not None:
            self.network.setup()
            self.network.enter_client_ns()
        if self.disk is not None:
            self.disk.mount_all()
            if len(self.nodes) > 1:    # the mount hides what __init__ wrote
                for i, node in enumerate(self.nodes.values(), 1):
                    write_meta_properties(node.data_dir, self.cluster_id, i)
        for node in self.nodes.values():   # all before waiting: a node serves once the quorum unfenced it
            node.start(wait=False)
        for node in self.nodes.values():
            node.wait_serving()
        if len(self.nodes) > 1:
            self.wait_all_registered(timeout_s)

    def wait_all_registered(self, timeout_s: float) -> None:
        """Every broker unfenced in the metadata (else RF=1 partitions would all land on the first ones)."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        want = set(range(1, len(self.nodes) + 1))
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        deadline = time.monotonic() + timeout_s
        seen: set[int] = set()
        while time.monotonic() < deadline:
            try:
                seen = set(admin.list_topics(timeout=3).brokers)
            except KafkaException:
                seen = set()
            if seen == want:
                return
            time.sleep(0.2)
        raise ClusterError(f"brokers never all registered: saw {sorted(seen)} of {sorted(want)}")

    def stop(self) -> None:
        """Stops every broker (by PID), then removes the namespaces; safe to call twice."""
        try:
            self.heal_extra_faults()
            for node in self.nodes.values():
                try:
                    node.stop()
                except Exception:  # noqa: BLE001 -- keep stopping the others, then remove the network
                    node.kill9()
        finally:
            try:
                if self.disk is not None:
                    self.disk.unmount_all()
            finally:
                if self.network is not None:
                    self.network.teardown()

    def heal_extra_faults(self) -> list[str]:
        """Resets clocks, frees disks, stops packet delay and loss; returns what was healed."""
        healed = []
        if self.clock is not None:
            self.clock.heal_all()
            healed.append("clock")
        if self.disk is not None:
            self.disk.heal_all()
            healed.append("disk")
        if self.packets is not None and (self.packets.lossy or self.packets.delayers):
            self.packets.heal_all()
            healed.append("packets")
        return healed

    # -- faults ------------------------------------------------------------------------------------------

    def leader(self, timeout_s: float = 8.0) -> str | None:
        """The metadata quorum leader's node name, via the public CLI; None if nobody answers in time."""
        if len(self.nodes) == 1:
            return self.names[0]
        cmd = [sys.executable, "-m", "cluster", "cluster", "describe-quorum",
               "--bootstrap-controller", self.voters, "--json"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                                  cwd=str(next(iter(self.nodes.values())).repo_root))
        except subprocess.TimeoutExpired:
            return None
        if proc.returncode != 0:
            return None
        leader_id = json.loads(proc.stdout)["leader_id"]
        return f"n{leader_id}" if leader_id is not None and leader_id > 0 else None

    def metadata_roles(self, topic: str | None, timeout_s: float = 5.0) -> tuple[str | None, dict[int, str]]:
        """(active controller, {partition: leader}) by node name, from one Metadata request that any live broker
        answers: kraftpy's controller_id there is the quorum leader that broker knows.  (None, {}) when nobody
        answers in time; a partition without a leader (-1) is left out."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap, "socket.timeout.ms": int(timeout_s * 1000)})
        try:
            metadata = admin.list_topics(topic, timeout=timeout_s)
        except KafkaException:
            return None, {}
        controller = f"n{metadata.controller_id}" if metadata.controller_id > 0 else None
        described = metadata.topics.get(topic) if topic is not None else None
        if described is None or described.error is not None:
            return controller, {}
        return controller, {p: f"n{info.leader}" for p, info in described.partitions.items() if info.leader >= 0}

    def partition(self, grudge: dict[str, list[str]]) -> None:
        if self.network is None:
            raise ClusterError("partition without network namespaces")
        self.network.apply_grudge(grudge)

    def heal_network(self) -> None:
        if self.network is not None:
            self.network.heal()

    def logs(self) -> dict[str, str]:
        return {name: str(node.log_path) for name, node in self.nodes.items()}
