"""``kraftpy cluster status``'s verdict from Metadata: offline = no leader, under-replicated = ISR < replicas."""

from __future__ import annotations

from cluster.cli.quorum import format_status, partition_problems
from cluster.client.types import BrokerInfo, ClusterMetadata, PartitionMetadata, TopicMetadata


def metadata(partitions: dict[int, tuple[int, tuple, tuple]]) -> ClusterMetadata:
    topic = TopicMetadata(name="t", topic_id=None, is_internal=False, partitions={
        index: PartitionMetadata(partition=index, leader_id=leader, leader_epoch=0, replica_nodes=replicas,
                                 isr_nodes=isr) for index, (leader, replicas, isr) in partitions.items()})
    brokers = {1: BrokerInfo(node_id=1, host="b1", port=9092, rack="r1")}
    return ClusterMetadata(cluster_id="c", controller_id=1, brokers=brokers, topics={"t": topic})


def test_healthy_partitions_are_not_reported():
    assert partition_problems(metadata({0: (1, (1, 2, 3), (1, 2, 3)), 1: (2, (2,), (2,))})) == []


def test_offline_and_under_replicated_are_told_apart():
    problems = partition_problems(metadata({0: (-1, (1, 2), (1,)), 1: (2, (1, 2, 3), (2, 3)),
                                            2: (3, (3,), (3,))}))
    assert [(p["partition"], p["state"]) for p in problems] == [(0, "offline"), (1, "under-replicated")]
    assert problems[1]["replicas"] == [1, 2, 3] and problems[1]["isr"] == [2, 3]


def test_format_names_brokers_controller_and_problems():
    status = {"cluster_id": "c", "controller_id": 2, "topics": 1, "partitions": 2,
              "brokers": [{"id": 1, "host": "b1", "port": 9092, "rack": None}],
              "offline": [{"topic": "t", "partition": 0, "state": "offline", "leader": -1, "replicas": [1],
                           "isr": []}], "under_replicated": []}
    text = format_status(status)
    assert "Controller:  2" in text and "b1:9092" in text and "offline" in text and "UNHEALTHY" in text
    assert "HEALTHY" in format_status({**status, "offline": []}).splitlines()[-1]
    assert "UNHEALTHY" not in format_status({**status, "offline": []})
