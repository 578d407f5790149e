"""Partition reassignment and leader elections against three broker processes, through real clients and the CLI.

One module-scoped cluster with ``auto.leader.rebalance.enable=false`` (so the manual elections are not raced by
the periodic check).  Reordering a partition's replicas is a reassignment that completes at once (nothing to
copy), which makes the preferred leader a different broker than the current leader without needing replicas to
catch up: the ElectLeaders tests use that.  The last test moves a partition's data onto another broker, which
needs follower replication to add the new replica to the ISR.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid

import pytest
from cluster_process import ProcessCluster, admin, partition_leaders, wait_for  # tests/helpers (conftest.py)
from confluent_kafka import Consumer, ElectionType, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from cluster.client import KafkaClient
from cluster.core.errors import ErrorCode

pytestmark = pytest.mark.timeout(180)

CLUSTER_ID = "kraftpy-reassign-" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = ProcessCluster(tmp_path_factory.mktemp("reassign"), CLUSTER_ID,
                       overrides={"auto.leader.rebalance.enable": "false"})
    c.start_all()
    yield c
    c.stop_all()


def create(cluster, name: str, assignments: dict[int, list[int]]) -> None:
    client = admin(cluster.bootstrap)
    futures = client.create_topics([NewTopic(name, num_partitions=len(assignments), replica_assignment=[assignments[i] for i in sorted(assignments)])])
    futures[name].result(15)
    assert wait_for(lambda: len(partition_leaders(cluster.bootstrap, name)) == len(assignments), 10)


def describe(cluster, name: str) -> dict[int, tuple[int, list[int], list[int]]]:
    """partition -> (leader, replicas, isr) as a real client sees it."""
    metadata = admin(cluster.bootstrap).list_topics(name, timeout=5)
    return {p.id: (p.leader, list(p.replicas), list(p.isrs)) for p in metadata.topics[name].partitions.values()}


def kraftpy(cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "cluster", "topics", *args, "--bootstrap-server",
                             cluster.bootstrap], capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, result.stderr
    return result


async def _with_client(cluster, fn):
    async with KafkaClient(cluster.bootstrap) as client:
        return await fn(client)


def test_apis_are_advertised(cluster):
    from broker_process import probe_api_versions
    node = next(iter(cluster.nodes.values()))
    host, port = node.bootstrap.split(":")
    versions = probe_api_versions(host, int(port))
    assert versions[43] == (0, 2) and versions[45] == (0, 0) and versions[46] == (0, 0)


def test_reorder_completes_at_once_and_preferred_election_moves_the_leader(cluster):
    create(cluster, "reorder", {0: [1, 2, 3]})
    assert describe(cluster, "reorder")[0][0] == 1
    outcomes = asyncio.run(_with_client(cluster, lambda c: c.alter_partition_reassignments({("reorder", 0): [2, 3, 1]})))
    assert outcomes == {("reorder", 0): (ErrorCode.NONE, None)}
    assert wait_for(lambda: describe(cluster, "reorder")[0][1] == [2, 3, 1], 5)
    assert describe(cluster, "reorder")[0][0] == 1  # a reorder keeps the leader: it is still in the ISR
    assert asyncio.run(_with_client(cluster, lambda c: c.list_partition_reassignments())) == {}
    # confluent-kafka's AdminClient.elect_leaders (librdkafka ElectLeaders v2)
    client = admin(cluster.bootstrap)
    result = client.elect_leaders(ElectionType.PREFERRED, [TopicPartition("reorder", 0)]).result(15)
    assert [(tp.topic, tp.partition, err) for tp, err in result.items()] == [("reorder", 0, None)]
    assert wait_for(lambda: describe(cluster, "reorder")[0][0] == 2, 5)  # every broker's metadata follows
    again = client.elect_leaders(ElectionType.PREFERRED, [TopicPartition("reorder", 0)]).result(15)
    error = next(iter(again.values()))
    assert error is not None and error.code() == 84  # ELECTION_NOT_NEEDED
    # produce and consume still work against the new leader
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    producer.produce("reorder", b"after-election", partition=0)
    assert producer.flush(15) == 0


def test_kafka_python_alter_list_and_cancel(cluster):
    """kafka-python's KafkaAdminClient speaks AlterPartitionReassignments v0 / ListPartitionReassignments v0."""
    from kafka import KafkaAdminClient
    from kafka import TopicPartition as KTP
    create(cluster, "kp", {0: [1], 1: [2]})
    client = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    try:
        nothing = client.alter_partition_reassignments({KTP("kp", 1): None})
        assert nothing[KTP("kp", 1)].errno == ErrorCode.NO_REASSIGNMENT_IN_PROGRESS
        bad = client.alter_partition_reassignments({KTP("kp", 1): [2, 9]})
        assert bad[KTP("kp", 1)].errno == ErrorCode.INVALID_REPLICA_ASSIGNMENT
        # With broker 3 stopped the move onto it cannot complete: list and cancel see it in progress.
        # kafka-python's admin client keeps the controller id it read at start and does not look again when
        # that broker refuses connections, so a fresh client is made once the cluster no longer lists broker 3
        # (it may have been the node named as controller).
        client.close()
        cluster.nodes[3].stop()
        assert wait_for(lambda: _cluster_without(cluster, 3), 20, 0.2)
        client = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
        assert client.alter_partition_reassignments({KTP("kp", 0): [1, 3]}) == {KTP("kp", 0): None}
        listed = client.list_partition_reassignments()
        print("in progress:", listed)
        assert list(listed) == [KTP("kp", 0)]
        entry = listed[KTP("kp", 0)]
        assert entry == {"replicas": [1, 3], "adding_replicas": [3], "removing_replicas": []}
        assert wait_for(lambda: describe(cluster, "kp")[0][1] == [1, 3], 5)
        assert client.alter_partition_reassignments({KTP("kp", 0): None}) == {KTP("kp", 0): None}
        assert wait_for(lambda: describe(cluster, "kp")[0][1] == [1], 5)
        assert client.list_partition_reassignments() == {}
    finally:
        client.close()
        if not cluster.nodes[3].is_alive():
            cluster.nodes[3].start()
            assert wait_for(lambda: 3 in admin(cluster.bootstrap).list_topics(timeout=5).brokers, 20, 0.2)


def _cluster_without(cluster, node_id: int) -> bool:
    """True once a real client's metadata lists neither node_id as a broker nor as the controller."""
    metadata = admin(cluster.bootstrap).list_topics(timeout=5)
    return node_id not in metadata.brokers and metadata.controller_id not in (node_id, -1)


def test_invalid_reassignments_are_refused(cluster):
    create(cluster, "bad", {0: [1, 2]})

    async def run(client):
        return await client.alter_partition_reassignments(
            {("bad", 0): [1, 1], ("bad", 7): [1], ("nope", 0): [1], ("bad", 1): [9]})
    outcomes = asyncio.run(_with_client(cluster, run))
    assert outcomes[("bad", 0)][0] == ErrorCode.INVALID_REPLICA_ASSIGNMENT
    assert outcomes[("bad", 7)][0] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert outcomes[("nope", 0)][0] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert outcomes[("bad", 1)][0] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    cancel = kraftpy(cluster, "reassign", "--topic", "bad", "--partition", "0", "--cancel", check=False)
    assert cancel.returncode == 1 and "NO_REASSIGNMENT_IN_PROGRESS" in cancel.stderr


def test_cli_reassign_plan_list_and_elect(cluster, tmp_path):
    create(cluster, "cli", {0: [1, 2, 3], 1: [2, 3, 1]})
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": "cli", "partition": 0, "replicas": [3, 1, 2], "log_dirs": ["any", "any", "any"]}]}))
    started = kraftpy(cluster, "reassign", "--plan", str(plan))
    assert "Started the reassignment of cli-0 to replicas 3,1,2." in started.stdout
    assert wait_for(lambda: describe(cluster, "cli")[0][1] == [3, 1, 2], 5)
    assert "No partition reassignments in progress." in kraftpy(cluster, "reassign", "--list").stdout
    single = kraftpy(cluster, "reassign", "--topic", "cli", "--partition", "1", "--replicas", "1,2,3")
    assert "cli-1" in single.stdout
    assert wait_for(lambda: describe(cluster, "cli")[1][1] == [1, 2, 3], 5)
    elected = kraftpy(cluster, "elect-leaders", "--topic", "cli")
    assert "Elected the preferred leader of cli-0." in elected.stdout
    assert "Elected the preferred leader of cli-1." in elected.stdout
    assert wait_for(lambda: {p: leader for p, (leader, _r, _i) in describe(cluster, "cli").items()} == {0: 3, 1: 1}, 5)
    again = kraftpy(cluster, "elect-leaders", "--topic", "cli", "--partition", "0")
    assert "Valid replica already elected for partition cli-0." in again.stdout
    usage = kraftpy(cluster, "reassign", "--topic", "cli", check=False)
    assert usage.returncode == 2


def test_move_a_partition_onto_another_broker_copies_data_and_drops_the_old_replica(cluster):
    """Needs follower replication: broker 3 must fetch the log and join the ISR before broker 1 is dropped."""
    create(cluster, "move", {0: [1]})
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    for i in range(100):
        producer.produce("move", f"m{i}".encode(), partition=0)
    assert producer.flush(15) == 0
    old_dir = cluster.nodes[1].partition_dir("move", 0)
    assert old_dir.exists()
    kraftpy(cluster, "reassign", "--topic", "move", "--partition", "0", "--replicas", "3")
    completed = wait_for(lambda: describe(cluster, "move")[0][1] == [3], 30, 0.5)
    state = describe(cluster, "move")
    listed = asyncio.run(_with_client(cluster, lambda c: c.list_partition_reassignments()))
    assert completed, f"reassignment did not complete: metadata {state}, in progress {listed}"
    assert state[0][0] == 3
    assert wait_for(lambda: not old_dir.exists(), 15, 0.2), "broker 1 kept the removed replica's directory"
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "move-check",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition("move", 0, 0)])
        values = []
        deadline = time.monotonic() + 20
        while len(values) < 100 and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                values.append(message.value().decode())
        watermarks = consumer.get_watermark_offsets(TopicPartition("move", 0), timeout=5)
        assert values == [f"m{i}" for i in range(100)], (
            f"read {len(values)} records; (log_start, high_watermark) on the new leader: {watermarks}")
    finally:
        consumer.close()
