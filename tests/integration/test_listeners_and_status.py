"""Two advertised listeners per broker, and ``kraftpy cluster status``, on a three-node cluster of processes.

Every node listens on INTERNAL (advertised as 127.0.0.1:<port>, like a compose-network name) and EXTERNAL
(advertised as localhost:<other port>, like a published host port).  Kafka answers Metadata and
FindCoordinator with each broker's endpoint *for the listener the request arrived on*; a real client
(confluent-kafka) bootstrapping through each listener must see only that listener's addresses, and produce
and consume through it.  Then ``kraftpy cluster status`` reports the three brokers and the controller and
exits 0; with a node stopped, an RF=1 partition it hosted goes offline and the command exits 1 naming it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid

import pytest
from broker_process import REPO_ROOT, free_port  # tests/helpers is on sys.path (conftest.py)
from cluster_process import ProcessCluster, broker_ids, create_topic, wait_for
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from cluster.client import KafkaClient
from cluster.client.connection import ApiKey
from cluster.wire.messages import find_coordinator_request as fcq

pytestmark = pytest.mark.timeout(180)

PROTOCOL_MAP = "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("listeners")
    process_cluster = ProcessCluster(root, "listeners-" + uuid.uuid4().hex[:10], nodes=3,
                                     overrides={"listener.security.protocol.map": PROTOCOL_MAP,
                                                "offsets.topic.replication.factor": "1",
                                                "group.initial.rebalance.delay.ms": "0"})
    process_cluster.external_ports = {}
    for node_id, node in process_cluster.nodes.items():
        external = free_port()
        process_cluster.external_ports[node_id] = external
        node.overrides.update({
            "listeners": f"INTERNAL://127.0.0.1:{node.port},EXTERNAL://127.0.0.1:{external}",
            "advertised.listeners": f"INTERNAL://127.0.0.1:{node.port},EXTERNAL://localhost:{external}"})
        node._write_config()
    try:
        process_cluster.start_all(timeout_s=30)
        yield process_cluster
    finally:
        process_cluster.stop_all()


def internal_addresses(cluster) -> dict[int, tuple[str, int]]:
    return {node_id: ("127.0.0.1", node.port) for node_id, node in cluster.nodes.items()}


def external_addresses(cluster) -> dict[int, tuple[str, int]]:
    return {node_id: ("localhost", port) for node_id, port in cluster.external_ports.items()}


def external_bootstrap(cluster) -> str:
    return ",".join(f"localhost:{port}" for port in cluster.external_ports.values())


def metadata_brokers(bootstrap: str) -> dict[int, tuple[str, int]]:
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    return {broker.id: (broker.host, broker.port) for broker in metadata.brokers.values()}


def test_metadata_advertises_the_listener_the_client_came_through(cluster):
    for node_id, node in cluster.nodes.items():
        assert metadata_brokers(f"127.0.0.1:{node.port}") == internal_addresses(cluster), f"INTERNAL of {node_id}"
        external = f"localhost:{cluster.external_ports[node_id]}"
        assert metadata_brokers(external) == external_addresses(cluster), f"EXTERNAL of {node_id}"


def find_coordinator(bootstrap: str, group: str) -> tuple[int, str, int]:
    async def ask():
        async with KafkaClient(bootstrap, client_id="listener-test") as client:
            for _ in range(100):
                response = await client.send(ApiKey.FIND_COORDINATOR, fcq.FindCoordinatorRequest(key=group,
                                                                                                  key_type=0))
                if response.error_code == 0:
                    return response.node_id, response.host, response.port
                await asyncio.sleep(0.1)
            raise AssertionError(f"FindCoordinator({group}) kept failing: {response.error_code}")
    return asyncio.run(ask())


def test_find_coordinator_answers_with_the_listeners_endpoint(cluster):
    group = f"listener-group-{uuid.uuid4().hex[:8]}"
    node_id, host, port = find_coordinator(external_bootstrap(cluster), group)
    assert (host, port) == external_addresses(cluster)[node_id]
    internal = ",".join(f"127.0.0.1:{node.port}" for node in cluster.nodes.values())
    assert find_coordinator(internal, group) == (node_id, *internal_addresses(cluster)[node_id])


@pytest.mark.parametrize("listener", ["INTERNAL", "EXTERNAL"])
def test_produce_and_consume_through_each_listener(cluster, listener):
    bootstrap = cluster.bootstrap if listener == "INTERNAL" else external_bootstrap(cluster)
    topic = f"listener-{listener.lower()}-{uuid.uuid4().hex[:8]}"
    create_topic(cluster.bootstrap, topic, partitions=3)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    sent = {f"{listener}-{i}".encode() for i in range(30)}
    for value in sorted(sent):
        producer.produce(topic, value=value)
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "g-" + topic, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    received: set[bytes] = set()
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 40
        while received != sent and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                received.add(message.value())
    finally:
        consumer.close()
    assert received == sent


def cluster_status(bootstrap: str) -> tuple[int, dict | None, str]:
    result = subprocess.run([sys.executable, "-m", "cluster", "cluster", "status", "--bootstrap-server", bootstrap,
                             "--json"], capture_output=True, text=True, timeout=30, cwd=str(REPO_ROOT))
    status = json.loads(result.stdout) if result.stdout.strip() else None
    return result.returncode, status, result.stderr


def test_cluster_status_healthy_then_offline_partition_after_a_node_stops(cluster):
    topic = f"status-{uuid.uuid4().hex[:8]}"
    create_topic(cluster.bootstrap, topic, partitions=3)   # RF=1, one partition on each node
    code, status, stderr = cluster_status(cluster.bootstrap)
    assert code == 0, stderr
    assert sorted(b["id"] for b in status["brokers"]) == [1, 2, 3]
    assert {(b["host"], b["port"]) for b in status["brokers"]} == set(internal_addresses(cluster).values())
    assert status["controller_id"] == cluster.quorum()["leader_id"]
    assert status["offline"] == [] and status["under_replicated"] == []
    text = subprocess.run([sys.executable, "-m", "cluster", "cluster", "status", "--bootstrap-server",
                           cluster.bootstrap], capture_output=True, text=True, timeout=30, cwd=str(REPO_ROOT))
    assert text.returncode == 0 and "HEALTHY" in text.stdout and f"127.0.0.1:{cluster.nodes[2].port}" in text.stdout

    leaders = {p.id: p.leader for p in AdminClient({"bootstrap.servers": cluster.bootstrap})
               .list_topics(topic, timeout=10).topics[topic].partitions.values()}
    victim = next(node_id for node_id in (3, 2, 1) if node_id in leaders.values()
                  and node_id != cluster.quorum()["leader_id"])
    cluster.nodes[victim].stop()
    survivors = ",".join(f"127.0.0.1:{node.port}" for node in cluster.nodes.values() if node.is_alive())
    # The controller fences the stopped broker (its session ends) and its RF=1 partitions lose their leader.
    assert wait_for(lambda: victim not in broker_ids(survivors), 30, 0.5), "stopped broker never fenced"
    assert wait_for(lambda: cluster_status(survivors)[0] == 1, 30, 0.5)
    code, status, stderr = cluster_status(survivors)
    assert code == 1, stderr
    offline = {(p["topic"], p["partition"]) for p in status["offline"]}
    assert offline >= {(topic, index) for index, leader in leaders.items() if leader == victim}
    assert victim not in [b["id"] for b in status["brokers"]]


def test_cluster_status_unreachable_exits_2():
    code, status, stderr = cluster_status(f"127.0.0.1:{free_port()}")
    assert code == 2 and status is None and "cluster status failed" in stderr


def test_single_node_advertises_per_listener_too(broker_factory):
    """Without a quorum (one broker, cluster mode off) the same rule holds: Metadata and FindCoordinator."""
    internal, external = free_port(), free_port()
    process = broker_factory("two-listeners", {
        "listeners": f"INTERNAL://127.0.0.1:{internal},EXTERNAL://127.0.0.1:{external}",
        "advertised.listeners": f"INTERNAL://127.0.0.1:{internal},EXTERNAL://localhost:{external}",
        "listener.security.protocol.map": PROTOCOL_MAP}, port=internal)
    assert metadata_brokers(f"127.0.0.1:{internal}") == {1: ("127.0.0.1", internal)}
    assert metadata_brokers(f"localhost:{external}") == {1: ("localhost", external)}
    group = f"single-{uuid.uuid4().hex[:8]}"
    assert find_coordinator(f"localhost:{external}", group) == (1, "localhost", external)
    assert find_coordinator(f"127.0.0.1:{internal}", group) == (1, "127.0.0.1", internal)
    assert process.is_alive()
