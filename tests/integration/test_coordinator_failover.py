"""Group coordinator failover (issue 5, "Must show"): kill -9 the coordinator's broker during consumption.

Three broker processes in cluster mode; ``__consumer_offsets`` with replication factor 3 and min ISR 2, and a
data topic with replication factor 3.  Two confluent-kafka consumers of one group consume and commit after
every message (synchronously, so each acknowledged commit is known).  Then the broker leading the group's
offsets partition (the coordinator) is killed with SIGKILL.  What must hold:

* the new coordinator (the partition's new leader, which loads the groups from its replica of the log)
  returns every offset that was acknowledged before the kill: no acknowledged commit is lost;
* the group resumes there from those offsets and consumes everything that is left;
* nothing is consumed twice except at or after the last acknowledged commit of its partition (a message
  whose own commit was not acknowledged may come again; one below a committed offset must not).
"""

from __future__ import annotations

import time
import uuid

import pytest
from cluster_process import ProcessCluster, create_topic, partition_leaders, wait_for  # tests/helpers
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from cluster.groups.partitioning import partition_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

CLUSTER_ID = "kraftpy-coordinator-failover-" + uuid.uuid4().hex[:8]
OFFSETS_TOPIC = "__consumer_offsets"
OFFSETS_PARTITIONS = 5
TOPIC = "failover-orders"
TOPIC_PARTITIONS = 4
GROUP = "failover-group"
MESSAGES = 400
CONSUMED_BEFORE_KILL = 150
RESUME_TIMEOUT_S = 120
BATCH = 10  # messages per commit: each commit waits for the offsets partition's replicated high watermark


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = ProcessCluster(tmp_path_factory.mktemp("coordinator-failover"), CLUSTER_ID, overrides={
        "offsets.topic.num.partitions": str(OFFSETS_PARTITIONS), "offsets.topic.replication.factor": "3",
        "min.insync.replicas": "2", "default.replication.factor": "3", "group.initial.rebalance.delay.ms": "0"})
    try:
        cluster.start_all()
        yield cluster
    finally:
        cluster.stop_all()


def _produce(bootstrap: str) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    failures = []
    for i in range(MESSAGES):
        producer.produce(TOPIC, key=f"k{i}".encode(), value=f"m{i}".encode(), partition=i % TOPIC_PARTITIONS,
                         on_delivery=lambda err, _msg: failures.append(err) if err else None)
        producer.poll(0)
    assert producer.flush(30) == 0, "messages still queued after 30 s"
    assert not failures, failures[:3]


class Member:
    """One consumer of the group; commits each message synchronously and records what was acknowledged."""

    def __init__(self, bootstrap: str, name: str, log: Ledger) -> None:
        self.name = name
        self.log = log
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": GROUP, "client.id": name, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
            "topic.metadata.refresh.interval.ms": 1000, "reconnect.backoff.max.ms": 500})
        self.consumer.subscribe([TOPIC])

    def poll_once(self, timeout_s: float = 0.2) -> None:
        """Consumes what arrives within ``timeout_s`` (up to a small batch), then commits its position."""
        messages = [m for m in self.consumer.consume(BATCH, timeout_s) if not m.error()]
        if not messages:
            return
        for message in messages:
            self.log.consumed(message.partition(), message.offset())
        try:
            results = self.consumer.commit(asynchronous=False)
        except KafkaException as exc:
            self.log.commit_errors.append(str(exc))
            return
        for result in results or ():
            if result.error is None and result.offset >= 0:
                self.log.acknowledged(result.partition, result.offset)
            elif result.error is not None:
                self.log.commit_errors.append(str(result.error))

    def close(self) -> None:
        self.consumer.close()


class Ledger:
    """What the two members consumed and which commits the coordinator acknowledged."""

    def __init__(self) -> None:
        self.seen: dict[tuple[int, int], int] = {}
        self.acked: dict[int, int] = {}
        self.violations: list[str] = []
        self.commit_errors: list[str] = []

    def consumed(self, partition: int, offset: int) -> None:
        if (partition, offset) in self.seen and offset < self.acked.get(partition, 0):
            self.violations.append(f"partition {partition} offset {offset} consumed again although offset "
                                   f"{self.acked[partition]} was committed")
        self.seen[(partition, offset)] = self.seen.get((partition, offset), 0) + 1

    def acknowledged(self, partition: int, offset: int) -> None:
        self.acked[partition] = max(self.acked.get(partition, 0), offset)

    def consumed_count(self) -> int:
        return len(self.seen)


def _committed(bootstrap: str, timeout_s: float) -> dict[int, int]:
    """The group's committed offsets, asked of whatever broker coordinates it now (retried until it answers)."""
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP, "enable.auto.commit": False})
    try:
        deadline = time.monotonic() + timeout_s
        last_error = None
        while time.monotonic() < deadline:
            try:
                partitions = probe.committed([TopicPartition(TOPIC, p) for p in range(TOPIC_PARTITIONS)], timeout=5)
            except KafkaException as exc:
                last_error = exc
                time.sleep(0.5)
                continue
            if any(tp.error is not None for tp in partitions):
                last_error = [tp.error for tp in partitions if tp.error]
                time.sleep(0.5)
                continue
            return {tp.partition: tp.offset for tp in partitions}
        raise AssertionError(f"no coordinator answered OffsetFetch within {timeout_s} s: {last_error}")
    finally:
        probe.close()


def test_group_resumes_on_new_coordinator_without_losing_commits(cluster):
    create_topic(cluster.bootstrap, TOPIC, TOPIC_PARTITIONS, replication_factor=3)
    _produce(cluster.bootstrap)
    ledger = Ledger()
    members = [Member(cluster.bootstrap, f"member-{i}", ledger) for i in range(2)]
    try:
        # Phase 1: both members share the topic and commit as they go.
        deadline = time.monotonic() + 90
        def both_consuming() -> bool:
            return ledger.consumed_count() >= CONSUMED_BEFORE_KILL and all(m.consumer.assignment() for m in members)

        while not both_consuming() and ledger.consumed_count() < MESSAGES and time.monotonic() < deadline:
            for member in members:
                member.poll_once()
        assert ledger.consumed_count() >= CONSUMED_BEFORE_KILL, \
            f"only {ledger.consumed_count()} messages consumed before the kill: {ledger.commit_errors[-3:]}"
        assignments = [len(member.consumer.assignment()) for member in members]
        assert all(assignments) and sum(assignments) == TOPIC_PARTITIONS, f"assignments {assignments}"
        acked_before_kill = dict(ledger.acked)
        assert acked_before_kill, "no commit was acknowledged before the kill"

        # The coordinator is the leader of the group's offsets partition: kill it.
        offsets_partition = partition_for(GROUP, OFFSETS_PARTITIONS)
        coordinator = partition_leaders(cluster.bootstrap, OFFSETS_TOPIC)[offsets_partition]
        assert coordinator in cluster.nodes, f"no coordinator for partition {offsets_partition}: {coordinator}"
        cluster.nodes[coordinator].kill9()
        survivors = ",".join(node.bootstrap for node in cluster.nodes.values() if node.is_alive())

        # The new leader of the offsets partition serves the group, with every acknowledged commit.
        assert wait_for(lambda: partition_leaders(survivors, OFFSETS_TOPIC).get(offsets_partition)
                        not in (None, -1, coordinator), 30, 0.2), "offsets partition leadership never moved"
        committed = _committed(survivors, 60)
        lost = {p: (offset, committed.get(p)) for p, offset in acked_before_kill.items()
                if committed.get(p, -1) < offset}
        assert not lost, f"acknowledged commits lost on failover (partition: (acknowledged, now)): {lost}"

        # Phase 2: the group resumes on the new coordinator and consumes everything that is left.
        deadline = time.monotonic() + RESUME_TIMEOUT_S
        while ledger.consumed_count() < MESSAGES and time.monotonic() < deadline:
            for member in members:
                member.poll_once()
        assert ledger.consumed_count() == MESSAGES, \
            f"consumed {ledger.consumed_count()} of {MESSAGES} after failover; commit errors {ledger.commit_errors[-5:]}"
        assert not ledger.violations, ledger.violations[:5]
        final = _committed(survivors, 30)
        assert all(final[p] >= acked_before_kill.get(p, 0) for p in range(TOPIC_PARTITIONS)), final
        assert sum(final.values()) == MESSAGES, f"final committed offsets {final}"
    finally:
        for member in members:
            member.close()
