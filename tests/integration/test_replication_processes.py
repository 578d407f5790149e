"""Partition replication under real faults, with three broker processes and a real client (issue 4).

RF 3, ``min.insync.replicas=2``, an idempotent acks=all confluent-kafka producer streaming numbered records:

* the partition leader is killed with SIGKILL again and again (restarted each time), and a follower is frozen
  with SIGSTOP for longer than its session, then resumed: afterwards a consumer reads every acknowledged record
  exactly once, in order, at the offset its delivery report named, and every replica holds the same bytes;
* all three brokers are killed at once with the power-loss hook on (bytes not yet fsynced vanish at restart):
  every acknowledged record is still there, because acks=all waits for every ISR member's fsync.

Timeouts are tuned down (sessions of 1.5 s) so each fault heals in seconds rather than Kafka's defaults.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest
from acked_stream import AckedStream, check_acknowledged_exactly_once, read_partition
from cluster_process import ProcessCluster, create_topic, partition_leaders, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TOPIC = "replicated"
TUNED = {
    "controller.quorum.election.timeout.ms": "300",
    "controller.quorum.fetch.timeout.ms": "800",
    "broker.session.timeout.ms": "1500",
    "broker.heartbeat.interval.ms": "300",
    "replica.lag.time.max.ms": "3000",
    "replica.fetch.backoff.ms": "100",
    "replica.fetch.wait.max.ms": "200",
    "default.replication.factor": "3",
    "offsets.topic.replication.factor": "3",
}


@pytest.fixture
def cluster(tmp_path):
    def make(overrides: dict[str, str] | None = None) -> ProcessCluster:
        made = ProcessCluster(tmp_path / "cluster", f"repl-{uuid.uuid4().hex[:10]}", overrides={**TUNED, **(overrides or {})})
        clusters.append(made)
        made.start_all()
        create_topic(made.bootstrap, TOPIC, 1, replication_factor=3, config={"min.insync.replicas": "2"})
        return made

    clusters: list[ProcessCluster] = []
    yield make
    for made in clusters:
        for node in made.nodes.values():
            if node.is_alive() and node.pid is not None:
                os.kill(node.pid, signal.SIGCONT)   # a failed test may leave a node frozen
        made.stop_all()


def _leader(cluster: ProcessCluster, timeout_s: float = 20.0) -> int:
    found: dict[int, int] = {}

    def known() -> bool:
        found.update(partition_leaders(cluster.bootstrap, TOPIC))
        return found.get(0, -1) >= 0
    assert wait_for(known, timeout_s, 0.2), "the partition has no leader"
    return found[0]


def _isr_full(cluster: ProcessCluster, timeout_s: float = 30.0) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})

    def full() -> bool:
        metadata = admin.list_topics(TOPIC, timeout=5)
        partition = metadata.topics[TOPIC].partitions[0]
        return len(partition.isrs) == 3
    assert wait_for(full, timeout_s, 0.3), "the ISR did not grow back to all three replicas"


def _replica_bytes(cluster: ProcessCluster) -> dict[int, bytes]:
    """The concatenated segment files of the partition on each node (identical once replicas converged)."""
    contents = {}
    for node_id, node in cluster.nodes.items():
        directory = node.partition_dir(TOPIC, 0)
        contents[node_id] = b"".join((directory / name).read_bytes()
                                     for name in sorted(os.listdir(directory)) if name.endswith(".log"))
    return contents


def test_leader_kills_and_follower_pause_lose_nothing(cluster):
    brokers = cluster()
    stream = AckedStream(brokers.bootstrap, TOPIC)
    stream.pump(until_acked=300)
    kills = []
    for _ in range(3):
        leader = _leader(brokers)
        stream.burst(100)
        brokers.nodes[leader].kill9()
        kills.append(leader)
        stream.pump(until_acked=len(stream.acked) + 200, timeout_s=60)   # acks continue on the new leader
        brokers.nodes[leader].start()
        _isr_full(brokers)
        stream.pump(until_acked=len(stream.acked) + 100)
    leader = _leader(brokers)
    follower = next(node_id for node_id in brokers.nodes if node_id != leader)
    os.kill(brokers.nodes[follower].pid, signal.SIGSTOP)
    try:
        # min ISR 2 of 3: once the frozen follower is out of the ISR, acks=all goes on with the other two.
        stream.pump(until_acked=len(stream.acked) + 300, timeout_s=60)
    finally:
        os.kill(brokers.nodes[follower].pid, signal.SIGCONT)
    _isr_full(brokers)
    stream.pump(until_acked=len(stream.acked) + 100)
    assert stream.producer.flush(60) == 0, "records still unacknowledged 60 s after the last fault"
    assert not stream.fatal_errors(), f"idempotent producer hit fatal errors: {stream.fatal_errors()}"

    records, high_watermark = read_partition(brokers.bootstrap, TOPIC)
    check_acknowledged_exactly_once(stream, records, high_watermark)
    assert len(stream.acked) >= 1500
    # Every replica converged on the same bytes: no offset holds two different messages anywhere.
    assert wait_for(lambda: len(set(_replica_bytes(brokers).values())) == 1, 20, 0.5), (
        f"replicas differ: sizes {[len(b) for b in _replica_bytes(brokers).values()]}")


def test_all_brokers_killed_at_once_with_power_loss_keep_acknowledged_writes(cluster):
    # A slow disk (each fsync of new bytes delayed 50 ms) keeps unsynced bytes around when the crash comes.
    brokers = cluster({"kraftpy.test.lose.unsynced.on.crash": "true", "kraftpy.test.fsync.delay.ms": "50"})
    stream = AckedStream(brokers.bootstrap, TOPIC)
    stream.pump(until_acked=500)
    stream.burst(150)
    time.sleep(0.003)
    for node in brokers.nodes.values():
        os.kill(node.pid, signal.SIGKILL)
    for node in brokers.nodes.values():
        node.kill9()   # reaps the processes (already dead) and records the crash in the node's log
    acked_at_crash = dict(stream.acked)
    for node in brokers.nodes.values():
        node.start()
    _leader(brokers, timeout_s=40)
    cuts = [line for node in brokers.nodes.values() for line in node.log_tail(200_000).splitlines()
            if "unsynced bytes of the previous run were dropped" in line and f"{TOPIC}-0" in line]
    assert cuts, "the power-loss hook dropped no unsynced bytes of the partition: the crash tested nothing"
    stream.pump(until_acked=len(stream.acked) + 200, timeout_s=90)
    assert stream.producer.flush(60) == 0
    records, high_watermark = read_partition(brokers.bootstrap, TOPIC)
    by_seq = {int(value.split(b"-")[1]): offset for offset, value in records}
    lost = sorted(seq for seq in acked_at_crash if seq not in by_seq)
    assert not lost, f"{len(lost)} records acknowledged before the crash are gone, e.g. {lost[:10]}"
    check_acknowledged_exactly_once(stream, records, high_watermark)


def test_replica_of_a_topic_deleted_while_down_is_removed_at_restart(cluster):
    from confluent_kafka.admin import AdminClient

    brokers = cluster()
    stream = AckedStream(brokers.bootstrap, TOPIC)
    stream.pump(until_acked=50)
    assert stream.producer.flush(30) == 0
    down = brokers.nodes[3]
    stray = down.partition_dir(TOPIC, 0)
    assert wait_for(lambda: stray.is_dir() and any(p.suffix == ".log" and p.stat().st_size > 0
                                                   for p in stray.iterdir()), 20, 0.2)
    down.stop()
    admin = AdminClient({"bootstrap.servers": brokers.bootstrap})
    admin.delete_topics([TOPIC])[TOPIC].result(15)
    down.start()
    assert wait_for(lambda: not stray.exists(), 20, 0.2), f"{stray} survived the restart of broker 3"
    assert "removing stray partition directory" in down.log_tail(20_000)
