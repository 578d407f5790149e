"""Three (or N) kraftpy broker processes in cluster mode, and the small probes process tests make of them.

Shared by the cluster process tests (test_cluster_mode_processes.py, test_cluster_faults.py) so that each
states only what it checks: ``ProcessCluster`` formats every node's log directory with one cluster id, gives
each a voter entry and, with ``faults=True``, a test fault file (``kraftpy.test.fault.file``) through which
``cut``/``heal`` drop the inter-node traffic of chosen links.  The probes ask the metadata quorum directly over
the controller gRPC service (``describe_at`` asks one voter, so a partitioned node can be asked alone).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
from broker_process import BrokerProcess, free_port
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from cluster.cli.quorum import describe_quorum
from cluster.storage.meta_properties import write_meta_properties
from cluster.transport.controller_grpc import ControllerClient


class ProcessCluster:
    """N broker processes that are all voters of one metadata quorum (not started: call ``start_all``)."""

    def __init__(self, root: Path, cluster_id: str, nodes: int = 3, overrides: dict[str, str] | None = None,
                 faults: bool = False) -> None:
        self.root = Path(root)
        self.cluster_id = cluster_id
        self.controller_ports = {i + 1: free_port() for i in range(nodes)}
        self.voters = ",".join(f"{node_id}@127.0.0.1:{port}" for node_id, port in self.controller_ports.items())
        self.nodes: dict[int, BrokerProcess] = {}
        for node_id in self.controller_ports:
            node_overrides = {"controller.quorum.voters": self.voters, "metrics.listener": "", "num.partitions": "3"}
            node_overrides.update(overrides or {})
            if faults:
                node_overrides["kraftpy.test.fault.file"] = str(self.fault_file(node_id))
            node = BrokerProcess(self.root / f"node-{node_id}", node_id=node_id, name=f"node-{node_id}",
                                 overrides=node_overrides)
            write_meta_properties(str(node.data_dir), cluster_id, node_id)
            self.nodes[node_id] = node

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start_all(self, timeout_s: float = 20.0) -> None:
        """Starts every node, then waits for each: a node accepts clients only once registered and unfenced,
        which needs a quorum, so waiting for one before starting the next would wait out its start-up bound."""
        for node in self.nodes.values():
            node.start(wait=False)
        for node in self.nodes.values():
            node.wait_ready(timeout_s)
        ids = set(self.nodes)
        assert wait_for(lambda: broker_ids(self.bootstrap) == ids, timeout_s, 0.2), "brokers never unfenced"

    def stop_all(self) -> None:
        for node in self.nodes.values():
            node.stop()

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes.values() if node.is_alive())

    def controller_address(self, node_id: int) -> str:
        return f"127.0.0.1:{self.controller_ports[node_id]}"

    # -- the test fault hook -----------------------------------------------------------------------------------
    def fault_file(self, node_id: int) -> Path:
        return self.root / f"faults-{node_id}.txt"

    def cut(self, node_id: int) -> None:
        """Cuts ``node_id`` off from every other node, both directions (each side drops the other)."""
        others = [other for other in self.nodes if other != node_id]
        self.fault_file(node_id).write_text(" ".join(map(str, others)) + "\n")
        for other in others:
            self.fault_file(other).write_text(f"{node_id}\n")

    def heal(self) -> None:
        for node_id in self.nodes:
            self.fault_file(node_id).write_text("")

    # -- the quorum ----------------------------------------------------------------------------------------------
    def quorum(self, timeout_s: float = 5.0) -> dict:
        """The leader's view (leader_id, leader_epoch, high_watermark, voters); RuntimeError if none answers."""
        return asyncio.run(describe_quorum(self.voters, timeout_s))

    def describe_at(self, node_id: int, timeout_s: float = 1.0) -> dict:
        """One voter's own answer: its quorum view if it is the active controller, else its error reply."""
        return controller_call(self.controller_address(node_id), "describe_quorum", {}, None, timeout_s)

    def wait_for_leader(self, timeout_s: float, among: list[int] | None = None, other_than: int | None = None,
                        min_epoch: int = -1) -> dict | None:
        """Polls the voters in ``among`` until one is the active controller satisfying the conditions."""
        among = among or list(self.nodes)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for node_id in among:
                try:
                    reply = self.describe_at(node_id, timeout_s=0.3)
                except grpc.RpcError:
                    continue
                info = reply.get("result")
                if reply["error_code"] == 0 and info["leader_id"] != other_than and info["leader_epoch"] >= min_epoch:
                    return info
            time.sleep(0.01)
        return None


def controller_call(address: str, op: str, args: dict, cluster_id: str | None, timeout_s: float = 2.0) -> dict:
    """One raw call of the typed broker<->controller gRPC service, as a tool (no source node id); returns the
    reply as a dict: ``error_code`` and ``message`` (the call status), ``leader_id``, ``result`` (None on error)."""
    async def call() -> dict:
        async with grpc.aio.insecure_channel(address) as channel:
            reply = await ControllerClient(channel).call(op, args, cluster_id=cluster_id, source_id=None,
                                                         timeout_s=timeout_s)
            return reply.as_dict()
    return asyncio.run(call())


# -- Kafka-client probes -------------------------------------------------------------------------------------------
def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def topics(bootstrap: str) -> set[str]:
    try:
        return set(admin(bootstrap).list_topics(timeout=2).topics)
    except KafkaException:   # a restarting broker may answer before it knows any live broker
        return set()


def create_topic(bootstrap: str, name: str, partitions: int, replication_factor: int = 1,
                 timeout_s: float = 15, config: dict[str, str] | None = None) -> None:
    client = admin(bootstrap)   # kept alive until the result arrives (librdkafka destroys a dropped handle)
    client.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=replication_factor,
                                   config=config or {})])[name].result(timeout_s)


def wait_for(predicate, timeout_s: float, interval_s: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return False


def broker_ids(bootstrap: str) -> set[int]:
    try:
        return set(admin(bootstrap).list_topics(timeout=5).brokers)
    except KafkaException:   # no broker unfenced yet: librdkafka reports a partial response
        return set()


def partition_leaders(bootstrap: str, topic: str) -> dict[int, int]:
    metadata = admin(bootstrap).list_topics(topic, timeout=5)
    return {p.id: p.leader for p in metadata.topics[topic].partitions.values()}
