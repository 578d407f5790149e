"""Faults and bad input against three broker processes in cluster mode (issue 3, "Bad input and faults").

One module-scoped cluster whose nodes carry the test fault hook (``kraftpy.test.fault.file``: the transport
drops Raft and controller traffic to and from the listed peers).  Tests run in file order: a heartbeat with
a stale broker epoch; a quorum leader cut off from both others (check-quorum resignation, new leader on the
majority side, old leader fenced by the higher epoch after healing); SIGTERM on the quorum leader (hand-over
time, partition leadership moved before exit); a quorum that lost its majority (admin requests fail
retriably, committed data stays readable, the cluster recovers when the two come back); then the two that
leave lasting marks in the peers' ``peers.json`` (first directory id seen per voter): a voter whose disk was
wiped, and last a second node started with an existing node id.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import time
import uuid

import pytest
from broker_process import BrokerProcess, free_port  # tests/helpers is on sys.path (conftest.py)
from cluster_process import (
    ProcessCluster,
    admin,
    broker_ids,
    controller_call,
    create_topic,
    partition_leaders,
    topics,
    wait_for,
)
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from cluster.broker.cluster_mode import CONTROLLER_CALL_TIMEOUT_MS
from cluster.core.errors import ErrorCode
from cluster.storage.meta_properties import write_meta_properties

pytestmark = pytest.mark.timeout(150)

CLUSTER_ID = "kraftpy-faults-" + uuid.uuid4().hex[:8]
FETCH_TIMEOUT_S = 2.0                        # controller.quorum.fetch.timeout.ms (default)
CHECK_QUORUM_S = 1.5 * FETCH_TIMEOUT_S       # a leader without majority contact for this long resigns
SLACK_S = 1.0                                # polling, process scheduling on a 2-core machine


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = ProcessCluster(tmp_path_factory.mktemp("kraft-faults"), CLUSTER_ID, faults=True)
    try:
        cluster.start_all()
        yield cluster
    finally:
        cluster.heal()
        cluster.stop_all()


def _leader(cluster: ProcessCluster) -> dict:
    info = cluster.wait_for_leader(10, among=[n for n, p in cluster.nodes.items() if p.is_alive()])
    assert info is not None, "no quorum leader"
    return info


def _wait_unfenced(node: BrokerProcess, log_mark: int) -> None:
    """A restarted broker registered again and was unfenced (its previous session must expire first)."""
    assert wait_for(lambda: "unfenced by the controller" in node.log_since(log_mark, 200_000), 25, 0.2), \
        node.log_since(log_mark)


def test_heartbeat_with_a_stale_broker_epoch_gets_stale_broker_epoch(cluster):
    leader = _leader(cluster)["leader_id"]
    follower = next(n for n in cluster.nodes if n != leader)
    reply = controller_call(cluster.controller_address(leader), "heartbeat",
                            {"broker_id": follower, "broker_epoch": -7, "offset": 0}, CLUSTER_ID)
    assert reply["error_code"] == 0, reply
    assert reply["result"]["error_code"] == ErrorCode.STALE_BROKER_EPOCH
    # and a call from another cluster is refused before it reaches the controller
    stranger = controller_call(cluster.controller_address(leader), "heartbeat",
                               {"broker_id": follower, "broker_epoch": 0, "offset": 0}, "another-cluster")
    assert stranger["error_code"] == ErrorCode.INCONSISTENT_CLUSTER_ID
    assert broker_ids(cluster.bootstrap) == {1, 2, 3}   # the real broker was not disturbed


def test_leader_cut_off_resigns_by_check_quorum_and_rejoins_as_follower_after_healing(cluster):
    before = _leader(cluster)
    old = before["leader_id"]
    others = [n for n in cluster.nodes if n != old]
    cluster.cut(old)
    cut_at = time.monotonic()
    try:
        resigned_after = None
        new_leader = None
        while time.monotonic() - cut_at < CHECK_QUORUM_S + FETCH_TIMEOUT_S + 3 and (
                resigned_after is None or new_leader is None):
            if resigned_after is None and cluster.describe_at(old, 0.3)["error_code"] == ErrorCode.NOT_CONTROLLER:
                resigned_after = time.monotonic() - cut_at
            if new_leader is None:
                new_leader = cluster.wait_for_leader(0.05, among=others, other_than=old,
                                                     min_epoch=before["leader_epoch"] + 1)
                elected_after = time.monotonic() - cut_at
            time.sleep(0.02)
        assert resigned_after is not None, "the cut-off leader never resigned"
        assert new_leader is not None, "the majority side elected no leader"
        print(f"\ncheck-quorum: leader {old} resigned {resigned_after:.2f} s after being cut off "
              f"(bound {CHECK_QUORUM_S:.1f} s); majority elected {new_leader['leader_id']} "
              f"(epoch {new_leader['leader_epoch']}) after {elected_after:.2f} s")
        assert resigned_after <= CHECK_QUORUM_S + SLACK_S
        # the majority keeps serving metadata writes while the old leader is cut off
        name = "during-cut-" + uuid.uuid4().hex[:6]
        create_topic(",".join(cluster.nodes[n].bootstrap for n in others), name, 2)
    finally:
        cluster.heal()
    # healed: the old leader learns the higher epoch and follows; the stale epoch never comes back
    assert wait_for(lambda: name in topics(cluster.nodes[old].bootstrap), 10, 0.1)
    info = cluster.quorum()
    assert info["leader_id"] != old
    assert wait_for(lambda: cluster.describe_at(old).get("leader_id") == info["leader_id"], 5, 0.1)
    assert cluster.describe_at(old)["error_code"] == ErrorCode.NOT_CONTROLLER
    assert info["leader_epoch"] >= new_leader["leader_epoch"] > before["leader_epoch"]
    assert wait_for(lambda: max(cluster.quorum()["high_watermark"] - end
                                for _, end, _ in cluster.quorum()["voters"]) <= 1, 10, 0.2)


def test_sigterm_on_the_quorum_leader_hands_over_at_once_and_moves_partition_leadership(cluster):
    before = _leader(cluster)
    old = before["leader_id"]
    others = [n for n in cluster.nodes if n != old]
    name = "handover-" + uuid.uuid4().hex[:6]
    create_topic(cluster.bootstrap, name, 6, replication_factor=3)
    led_before = {p for p, leader in partition_leaders(cluster.bootstrap, name).items() if leader == old}
    assert led_before, "the leaving node led none of the partitions"
    node = cluster.nodes[old]
    mark = node.log_size()
    node.process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    new_leader = cluster.wait_for_leader(FETCH_TIMEOUT_S + 3, among=others, other_than=old,
                                         min_epoch=before["leader_epoch"] + 1)
    handover_s = time.monotonic() - signalled
    assert new_leader is not None
    node.process.wait(15)
    exited_s = time.monotonic() - signalled
    node.stop()   # records the exit status
    survivors = ",".join(cluster.nodes[n].bootstrap for n in others)
    leaders = partition_leaders(survivors, name)
    print(f"\nSIGTERM on quorum leader {old}: new leader {new_leader['leader_id']} after {handover_s * 1000:.0f} ms "
          f"(fetch timeout {FETCH_TIMEOUT_S * 1000:.0f} ms); process exited after {exited_s:.2f} s; "
          f"partitions {sorted(led_before)} now led by {[leaders[p] for p in sorted(led_before)]}")
    assert handover_s < FETCH_TIMEOUT_S / 2, f"hand-over took {handover_s:.2f} s"
    log_text = node.log_since(mark, 50_000)
    assert "controlled shutdown complete" in log_text, log_text
    # moved by the controlled shutdown, before the process exited (not by a later session-timeout fencing)
    assert all(leaders[p] in others for p in led_before), leaders
    restart_mark = node.log_size()
    node.start()
    _wait_unfenced(node, restart_mark)


def test_quorum_without_majority_fails_admin_requests_retriably_and_committed_data_stays_readable(cluster):
    survivor = _leader(cluster)["leader_id"]   # the leader survives: it must notice that it lost its quorum
    name = "committed-" + uuid.uuid4().hex[:6]
    create_topic(cluster.bootstrap, name, 3)
    partition = next(p for p, leader in partition_leaders(cluster.bootstrap, name).items() if leader == survivor)
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    for i in range(20):
        producer.produce(name, value=b"kept-%d" % i, partition=partition)
    assert producer.flush(15) == 0
    victims = [n for n in cluster.nodes if n != survivor]
    for victim in victims:
        cluster.nodes[victim].kill9()
    lost_at = time.monotonic()
    alone = cluster.nodes[survivor].bootstrap

    # a raw CreateTopics: answered with a retriable error, not left hanging
    from cluster.client import KafkaClient
    from cluster.client.connection import ApiKey
    from cluster.wire.messages import create_topics_request as ctq

    async def raw_create() -> tuple[int, float]:
        async with KafkaClient(alone, client_id="faults-test") as client:
            request = ctq.CreateTopicsRequest(topics=[ctq.CreatableTopic(
                name="no-quorum-" + uuid.uuid4().hex[:6], num_partitions=1, replication_factor=1, assignments=[],
                configs=[])], timeout_ms=5000, validate_only=False)
            started = time.monotonic()
            response = await client.send(ApiKey.CREATE_TOPICS, request, timeout_ms=30_000)
            return response.topics[0].error_code, time.monotonic() - started

    code, took_s = asyncio.run(raw_create())
    print(f"\nno quorum: CreateTopics answered {ErrorCode(code).name} after {took_s:.2f} s "
          f"({time.monotonic() - lost_at:.2f} s after losing the majority)")
    assert code in (ErrorCode.NOT_CONTROLLER, ErrorCode.REQUEST_TIMED_OUT)
    assert took_s <= CONTROLLER_CALL_TIMEOUT_MS / 1000 + SLACK_S

    # confluent-kafka's AdminClient: the future fails (retriable / timed out) within its request timeout
    client = admin(alone)
    future = client.create_topics([NewTopic("no-quorum-ck-" + uuid.uuid4().hex[:6], 1, 1)],
                                  request_timeout=6, operation_timeout=5)
    started = time.monotonic()
    with pytest.raises(KafkaException) as failure:
        next(iter(future.values())).result(30)
    error = failure.value.args[0]
    print(f"no quorum: confluent-kafka AdminClient.create_topics failed with {error.name()} "
          f"(retriable={error.retriable()}) after {time.monotonic() - started:.2f} s")
    assert time.monotonic() - started <= 6 + 2 * SLACK_S
    assert error.retriable() or error.code() in (KafkaError._TIMED_OUT, KafkaError.NOT_CONTROLLER,
                                                  KafkaError.REQUEST_TIMED_OUT), error

    # data committed before the failure stays readable from the survivor
    consumer = Consumer({"bootstrap.servers": alone, "group.id": "unused", "enable.auto.commit": False})
    consumer.assign([TopicPartition(name, partition, 0)])
    seen = []
    deadline = time.monotonic() + 15
    while len(seen) < 20 and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            seen.append(message.value())
    consumer.close()
    assert seen == [b"kept-%d" % i for i in range(20)]

    # the two come back: the quorum elects a leader and admin requests work again
    marks = {victim: cluster.nodes[victim].log_size() for victim in victims}
    for victim in victims:
        cluster.nodes[victim].start()
    assert cluster.wait_for_leader(15) is not None
    create_topic(cluster.bootstrap, "recovered-" + uuid.uuid4().hex[:6], 2)
    for victim in victims:
        _wait_unfenced(cluster.nodes[victim], marks[victim])
    assert broker_ids(cluster.bootstrap) == {1, 2, 3}


def test_voter_with_a_wiped_disk_is_detected_and_the_cluster_keeps_a_leader(cluster):
    leader = _leader(cluster)["leader_id"]
    wiped = next(n for n in cluster.nodes if n != leader)
    node = cluster.nodes[wiped]
    name = "before-wipe-" + uuid.uuid4().hex[:6]
    create_topic(cluster.bootstrap, name, 2)
    node.stop()
    shutil.rmtree(node.data_dir)
    write_meta_properties(str(node.data_dir), CLUSTER_ID, wiped)   # re-formatted, same cluster id
    marks = {n: p.log_size() for n, p in cluster.nodes.items()}
    node.start()
    peers = [n for n in cluster.nodes if n != wiped]
    assert wait_for(lambda: any(f"voter {wiped} now speaks from raft directory id" in
                                cluster.nodes[n].log_since(marks[n], 200_000) for n in peers), 10, 0.2), \
        "no peer noticed the wiped voter"
    info = cluster.wait_for_leader(5, among=peers)
    assert info is not None
    # the wiped voter catches up from the leader (it may fetch) and sees the metadata written before the wipe
    assert wait_for(lambda: name in topics(node.bootstrap), 15, 0.2)
    assert wait_for(lambda: broker_ids(cluster.bootstrap) == {1, 2, 3}, 20, 0.2)


def test_second_node_with_an_existing_node_id_is_refused_and_the_cluster_keeps_serving(cluster, tmp_path):
    leader = _leader(cluster)["leader_id"]
    # A copy of a follower's config whose node.id was not changed (on a host of its own, here: its own ports)
    duplicate_id = next(n for n in cluster.nodes if n != leader)
    voters = ",".join(item if not item.startswith(f"{duplicate_id}@") else f"{duplicate_id}@127.0.0.1:{free_port()}"
                      for item in cluster.voters.split(","))
    impostor = BrokerProcess(tmp_path / "impostor", node_id=duplicate_id, name="impostor", overrides={
        "controller.quorum.voters": voters, "metrics.listener": ""})
    write_meta_properties(str(impostor.data_dir), CLUSTER_ID, duplicate_id)
    real = cluster.nodes[duplicate_id]
    marks = {n: p.log_size() for n, p in cluster.nodes.items()}
    impostor.start()
    try:
        assert wait_for(lambda: "DUPLICATE_BROKER_REGISTRATION" in impostor.log_tail(50_000), 15, 0.2), \
            impostor.log_tail()
        assert f"node.id={duplicate_id} has a live session" in impostor.log_tail(50_000)
        # the voters saw the same voter id speak from another raft directory and said so
        assert wait_for(lambda: any(f"two nodes share node.id={duplicate_id}" in p.log_since(marks[n], 200_000)
                                    for n, p in cluster.nodes.items() if n != duplicate_id), 10, 0.2)
        metadata = admin(cluster.bootstrap).list_topics(timeout=5)
        assert {b.id: b.port for b in metadata.brokers.values()} == {n: p.port for n, p in cluster.nodes.items()}
        assert metadata.brokers[duplicate_id].port == real.port != impostor.port
        name = "after-impostor-" + uuid.uuid4().hex[:6]
        create_topic(cluster.bootstrap, name, 3)
        assert impostor.is_alive()   # it stays, fenced and unregistered, and serves no partition
        # the real node applies the new topic once its metadata log catches up (asynchronously, as in Kafka)
        assert wait_for(lambda: name in topics(real.bootstrap), 15, 0.2), topics(real.bootstrap)
    finally:
        impostor.stop()

