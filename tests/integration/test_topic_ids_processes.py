"""Topic ids tell a re-created topic from the old one (KIP-516), also across clusters and controllers.

The controller once drew topic ids from ``random.Random(0)`` when nobody passed a source, and the broker never
did: every kraftpy cluster gave its first topic the same id, and a new active controller (whose generator had
not advanced) could hand a deleted topic's id to a new topic.  Real clients read the ids through Metadata v10+.
"""

from __future__ import annotations

import os
import signal
import uuid

import pytest
from cluster_process import ProcessCluster, create_topic, wait_for
from confluent_kafka import TopicCollection
from confluent_kafka.admin import AdminClient

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TUNED = {"controller.quorum.election.timeout.ms": "300", "controller.quorum.fetch.timeout.ms": "800",
         "broker.session.timeout.ms": "1500", "broker.heartbeat.interval.ms": "300"}


def topic_id(bootstrap: str, name: str) -> str:
    client = AdminClient({"bootstrap.servers": bootstrap})
    description = client.describe_topics(TopicCollection([name]))[name].result(15)
    return str(description.topic_id)


def delete_topic(bootstrap: str, name: str) -> None:
    client = AdminClient({"bootstrap.servers": bootstrap})
    client.delete_topics([name])[name].result(15)


def test_two_clusters_give_their_first_topics_different_ids(tmp_path):
    ids = []
    for index in range(2):
        cluster = ProcessCluster(tmp_path / f"cluster-{index}", f"ids-{uuid.uuid4().hex[:10]}", nodes=1,
                                 overrides=TUNED)
        try:
            cluster.start_all()
            create_topic(cluster.bootstrap, "first", 1)
            ids.append(topic_id(cluster.bootstrap, "first"))
        finally:
            cluster.stop_all()
    assert ids[0] != ids[1], f"both clusters named their first topic {ids[0]}"


def test_a_topic_recreated_after_a_controller_change_gets_a_new_id(tmp_path):
    cluster = ProcessCluster(tmp_path / "cluster", f"ids-{uuid.uuid4().hex[:10]}", overrides=TUNED)
    try:
        cluster.start_all()
        create_topic(cluster.bootstrap, "reborn", 1, replication_factor=3)
        first_id = topic_id(cluster.bootstrap, "reborn")
        delete_topic(cluster.bootstrap, "reborn")
        old_controller = cluster.quorum()["leader_id"]
        cluster.nodes[old_controller].kill9()
        assert cluster.wait_for_leader(15, other_than=old_controller) is not None, "no new controller"
        survivors = ",".join(n.bootstrap for i, n in cluster.nodes.items() if i != old_controller)
        assert wait_for(lambda: _created(survivors, "reborn"), 30, 0.5), "could not re-create the topic"
        second_id = topic_id(survivors, "reborn")
        assert second_id != first_id, f"the re-created topic kept the deleted topic's id {first_id}"
    finally:
        for node in cluster.nodes.values():
            if node.is_alive() and node.pid is not None:
                os.kill(node.pid, signal.SIGCONT)
        cluster.stop_all()


def _created(bootstrap: str, name: str) -> bool:
    try:
        create_topic(bootstrap, name, 1, replication_factor=2)
        return True
    except Exception:  # noqa: BLE001 -- the new controller may still be catching up; retried by wait_for
        return False
