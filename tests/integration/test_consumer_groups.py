"""Consumer groups with real clients against a real broker process.

What issue 5 asks to see: three members of confluent-kafka, kafka-python and aiokafka groups share a
6-partition topic with no overlap; a member leaving, or dying (no LeaveGroup, session timeout), moves its
partitions to the others; committed offsets are resumed by a new member after the consumer restarts and
after the broker restarts (SIGKILL: a commit is acknowledged only once durable); librdkafka's
cooperative-sticky assignor works incrementally; a static member (group.instance.id) restarts without a
rebalance; ``kcat -G`` consumes and commits; and with the default ``group.initial.rebalance.delay.ms`` a
one-member group forms within ~4 s (other brokers took 8-25 s).  Admin operations (list, describe, delete,
committed offsets) go through confluent's AdminClient.

Every member runs in its own thread with its own client (aiokafka: its own event loop), polling the way an
application does, and reports its current assignment and the records it received.  Most tests use their own
broker with a short initial delay and short minimum session timeout so they finish quickly.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest
from client_adapters import KCAT, Msg, create_topic, kcat_available, produce, unique_topic

pytestmark = [pytest.mark.timeout(120)]

PARTITIONS = 6
FAST_GROUPS = {
    "group.initial.rebalance.delay.ms": "100",
    "group.min.session.timeout.ms": "1000",
}
CLIENTS = ("confluent", "kafka-python", "aiokafka")


def wait_until(predicate, timeout_s: float, what: str, interval_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def unique_group(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def messages(count: int, tag: str = "m") -> list[Msg]:
    return [Msg(None, f"{tag}-{i}".encode(), (), None, i % PARTITIONS) for i in range(count)]


class Member(threading.Thread):
    """One group member: a consumer of ``client`` kind polling in its own thread."""

    def __init__(self, client: str, bootstrap: str, group: str, topic: str, name: str, **config) -> None:
        super().__init__(name=f"{client}-{name}", daemon=True)
        self.client, self.bootstrap, self.group, self.topic = client, bootstrap, group, topic
        self.config = config
        self.assignment: frozenset[int] = frozenset()
        self.records: list[tuple[int, int, bytes]] = []  # (partition, offset, value)
        self.assigned_events: list[frozenset[int]] = []
        self.revoked_events: list[frozenset[int]] = []
        self.errors: list[str] = []
        self.commit_after_poll = config.pop("commit_after_poll", False)
        self._stop_event = threading.Event()
        self._lock = threading.Lock()
        self.closed = threading.Event()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop_event.set()
        self.join(timeout_s)
        assert not self.is_alive(), f"{self.name} did not close within {timeout_s}s"

    def values(self) -> set[bytes]:
        with self._lock:
            return {value for _, _, value in self.records}

    def run(self) -> None:
        try:
            if self.client == "confluent":
                self._run_confluent()
            elif self.client == "kafka-python":
                self._run_kafka_python()
            else:
                asyncio.run(self._run_aiokafka())
        except Exception as exc:  # noqa: BLE001 - reported to the test thread
            self.errors.append(repr(exc))
        finally:
            self.closed.set()

    def _record(self, partition: int, offset: int, value: bytes) -> None:
        with self._lock:
            self.records.append((partition, offset, value))

    # -- confluent-kafka (librdkafka) ----------------------------------------------------------------
    def _run_confluent(self) -> None:
        from confluent_kafka import Consumer

        conf = {"bootstrap.servers": self.bootstrap, "group.id": self.group, "auto.offset.reset": "earliest",
                "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 300,
                "fetch.wait.max.ms": 100, "client.id": self.name}
        conf.update(self.config)
        consumer = Consumer(conf)

        def on_assign(consumer_, partitions):
            self.assigned_events.append(frozenset(p.partition for p in partitions))

        def on_revoke(consumer_, partitions):
            self.revoked_events.append(frozenset(p.partition for p in partitions))

        consumer.subscribe([self.topic], on_assign=on_assign, on_revoke=on_revoke)
        try:
            while not self._stop_event.is_set():
                message = consumer.poll(0.1)
                if message is not None:
                    if message.error():
                        self.errors.append(str(message.error()))
                    else:
                        self._record(message.partition(), message.offset(), message.value())
                        if self.commit_after_poll:
                            consumer.commit(message=message, asynchronous=False)
                self.assignment = frozenset(tp.partition for tp in consumer.assignment())
        finally:
            consumer.close()

    # -- kafka-python ----------------------------------------------------------------------------------
    def _run_kafka_python(self) -> None:
        from kafka import KafkaConsumer, OffsetAndMetadata

        consumer = KafkaConsumer(self.topic, bootstrap_servers=self.bootstrap, group_id=self.group,
                                 auto_offset_reset="earliest", enable_auto_commit=False,
                                 session_timeout_ms=6000, heartbeat_interval_ms=300, fetch_max_wait_ms=100,
                                 client_id=self.name, **self.config)
        try:
            while not self._stop_event.is_set():
                batches = consumer.poll(timeout_ms=100)
                for partition, records in batches.items():
                    for record in records:
                        self._record(record.partition, record.offset, record.value)
                    if self.commit_after_poll and records:
                        consumer.commit({partition: OffsetAndMetadata(records[-1].offset + 1, "", -1)})
                self.assignment = frozenset(tp.partition for tp in consumer.assignment())
        finally:
            consumer.close()

    # -- aiokafka -------------------------------------------------------------------------------------
    async def _run_aiokafka(self) -> None:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(self.topic, bootstrap_servers=self.bootstrap, group_id=self.group,
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    session_timeout_ms=6000, heartbeat_interval_ms=300, fetch_max_wait_ms=100,
                                    client_id=self.name, **self.config)
        await consumer.start()
        try:
            while not self._stop_event.is_set():
                batches = await consumer.getmany(timeout_ms=100)
                for partition, records in batches.items():
                    for record in records:
                        self._record(record.partition, record.offset, record.value)
                    if self.commit_after_poll and records:
                        await consumer.commit({partition: records[-1].offset + 1})
                self.assignment = frozenset(tp.partition for tp in consumer.assignment())
        finally:
            await consumer.stop()


def split_evenly(members: list[Member], partitions: int = PARTITIONS):
    """True once the members' assignments are disjoint, cover every partition and differ by at most one."""
    assignments = [member.assignment for member in members]
    sizes = [len(a) for a in assignments]
    union = frozenset().union(*assignments)
    return (sum(sizes) == partitions and union == frozenset(range(partitions))
            and max(sizes) - min(sizes) <= 1)


def check_members(members: list[Member]) -> None:
    for member in members:
        assert not member.errors, f"{member.name}: {member.errors}"


# -- the default initial delay -----------------------------------------------------------------------

def test_one_member_group_forms_within_4s_with_default_initial_delay(broker):
    """``group.initial.rebalance.delay.ms`` defaults to 3000 ms: a new group waits that long, no more."""
    topic = unique_topic("group-delay")
    create_topic(broker.bootstrap, topic, 2)
    member = Member("confluent", broker.bootstrap, unique_group("delay"), topic, "solo")
    started = time.monotonic()
    member.start()
    try:
        wait_until(lambda: member.assignment == {0, 1}, 10, "the single member's assignment")
        formed_s = time.monotonic() - started
    finally:
        member.stop()
    check_members([member])
    assert formed_s < 4.5, f"a one-member group took {formed_s:.1f}s to form"
    assert formed_s >= 2.0, f"formed in {formed_s:.1f}s: the 3 s initial delay for a new group was skipped"


# -- sharing, leaving, dying ---------------------------------------------------------------------------

@pytest.mark.parametrize("client", CLIENTS)
def test_three_members_share_partitions_and_a_leaver_moves_them(broker_factory, client):
    broker = broker_factory(f"share-{client}", FAST_GROUPS)
    topic = unique_topic("shared")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    group = unique_group(f"share-{client}")
    members = [Member(client, broker.bootstrap, group, topic, f"m{i}") for i in range(3)]
    for member in members:
        member.start()
    try:
        wait_until(lambda: split_evenly(members) and all(len(m.assignment) == 2 for m in members), 40,
                   "three members with two partitions each")
        sent = messages(60)
        produce("confluent", broker.bootstrap, topic, sent)
        wait_until(lambda: set().union(*(m.values() for m in members)) == {m.value for m in sent}, 30,
                   "every message consumed by some member")
        for member in members:  # each member read only its own partitions
            assert {partition for partition, _, _ in member.records} <= member.assignment

        leaver, stayers = members[0], members[1:]
        moved = leaver.assignment
        leaver.stop()  # close() sends LeaveGroup: the rebalance starts at once
        left_at = time.monotonic()
        wait_until(lambda: split_evenly(stayers) and all(len(m.assignment) == 3 for m in stayers), 30,
                   "the two remaining members taking over the leaver's partitions")
        rebalance_s = time.monotonic() - left_at
        assert moved <= stayers[0].assignment | stayers[1].assignment
        assert rebalance_s < 10, f"rebalance after LeaveGroup took {rebalance_s:.1f}s"
    finally:
        for member in members:
            if member.is_alive():
                member.stop()
    check_members(members)


_DYING_CONSUMER = textwrap.dedent("""
    import sys, time
    from confluent_kafka import Consumer
    bootstrap, group, topic = sys.argv[1:4]
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "session.timeout.ms": 2000,
                         "heartbeat.interval.ms": 200, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    while True:
        consumer.poll(0.1)
        if consumer.assignment():
            print("ASSIGNED", ",".join(str(tp.partition) for tp in consumer.assignment()), flush=True)
""")


def test_a_member_that_dies_is_removed_after_its_session_timeout(broker_factory):
    broker = broker_factory("dying", FAST_GROUPS)
    topic = unique_topic("dying")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    group = unique_group("dying")
    survivor = Member("confluent", broker.bootstrap, group, topic, "survivor", **{"session.timeout.ms": 6000})
    survivor.start()
    victim = subprocess.Popen([sys.executable, "-c", _DYING_CONSUMER, broker.bootstrap, group, topic],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = victim.stdout.readline()
        assert line.startswith("ASSIGNED"), line
        wait_until(lambda: len(survivor.assignment) == PARTITIONS // 2, 30, "the survivor holding half the partitions")
        os.kill(victim.pid, signal.SIGKILL)  # no LeaveGroup: only the 2 s session timeout can tell
        victim.wait()
        killed_at = time.monotonic()
        wait_until(lambda: survivor.assignment == frozenset(range(PARTITIONS)), 20,
                   "the survivor owning every partition")
        takeover_s = time.monotonic() - killed_at
        assert takeover_s < 8, f"took {takeover_s:.1f}s to notice a member with a 2 s session timeout died"
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
        survivor.stop()
    check_members([survivor])


# -- committed offsets ---------------------------------------------------------------------------------

@pytest.mark.parametrize("client", CLIENTS)
def test_committed_offsets_survive_consumer_and_broker_restarts(broker_factory, client):
    broker = broker_factory(f"offsets-{client}", FAST_GROUPS)
    topic = unique_topic("resume")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    group = unique_group(f"resume-{client}")
    first_batch, second_batch, third_batch = messages(30, "first"), messages(30, "second"), messages(30, "third")
    produce("confluent", broker.bootstrap, topic, first_batch)

    def consume_round(name: str, expected: list[Msg]) -> Member:
        member = Member(client, broker.bootstrap, group, topic, name, commit_after_poll=True)
        member.start()
        try:
            wanted = {m.value for m in expected}
            wait_until(lambda: wanted <= member.values(), 40, f"{name} reading {len(wanted)} new messages")
            time.sleep(0.3)  # anything older than the committed offsets would show up now
        finally:
            member.stop()
        check_members([member])
        return member

    first = consume_round("first", first_batch)
    assert len(first.records) == len(first_batch)

    produce("confluent", broker.bootstrap, topic, second_batch)
    second = consume_round("second", second_batch)  # a new consumer process, same group
    assert second.values() == {m.value for m in second_batch}, "resumed from the committed offsets"

    broker.restart(crash=True)  # SIGKILL: acknowledged commits must already be on disk
    produce("confluent", broker.bootstrap, topic, third_batch)
    third = consume_round("third", third_batch)
    assert third.values() == {m.value for m in third_batch}, "resumed after the broker restart"


def test_admin_lists_describes_and_deletes_groups_and_reads_offsets(broker_factory):
    from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    broker = broker_factory("admin", FAST_GROUPS)
    topic = unique_topic("admin")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    produce("confluent", broker.bootstrap, topic, messages(12))
    group = unique_group("admin")
    member = Member("confluent", broker.bootstrap, group, topic, "m", commit_after_poll=True)
    member.start()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    try:
        wait_until(lambda: len(member.records) == 12, 30, "the member reading all messages")
        internal = admin.list_topics("__consumer_offsets", timeout=10).topics["__consumer_offsets"]
        assert len(internal.partitions) == 50  # offsets.topic.num.partitions, created on first use
        listed = admin.list_consumer_groups(request_timeout=10).result()
        assert any(g.group_id == group for g in listed.valid)
        described = admin.describe_consumer_groups([group], request_timeout=10)[group].result()
        assert described.state == ConsumerGroupState.STABLE and len(described.members) == 1
        assert {tp.partition for tp in described.members[0].assignment.topic_partitions} == set(range(PARTITIONS))
        with pytest.raises(Exception, match="NON_EMPTY_GROUP"):
            admin.delete_consumer_groups([group], request_timeout=10)[group].result()
    finally:
        member.stop()
    check_members([member])
    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result()
    assert sum(tp.offset for tp in offsets.topic_partitions) == 12
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])
    assert admin.list_consumer_group_offsets([request])[group].result().topic_partitions[0].offset == 2
    admin.delete_consumer_groups([group], request_timeout=10)[group].result()
    after = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result()
    assert after.topic_partitions == [] or all(tp.offset < 0 for tp in after.topic_partitions)


# -- librdkafka specifics ---------------------------------------------------------------------------------

def test_cooperative_sticky_assignor_rebalances_incrementally(broker_factory):
    broker = broker_factory("cooperative", FAST_GROUPS)
    topic = unique_topic("coop")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    group = unique_group("coop")
    config = {"partition.assignment.strategy": "cooperative-sticky"}
    first = Member("confluent", broker.bootstrap, group, topic, "first", **config)
    second = Member("confluent", broker.bootstrap, group, topic, "second", **config)
    first.start()
    try:
        wait_until(lambda: first.assignment == frozenset(range(PARTITIONS)), 20, "the first member owning all")
        second.start()
        wait_until(lambda: split_evenly([first, second]) and len(second.assignment) == 3, 30,
                   "an incremental hand-over of half the partitions")
        # Incremental: the first member gave up only what moved and never had everything revoked.
        assert all(len(revoked) < PARTITIONS for revoked in first.revoked_events), first.revoked_events
        assert frozenset().union(*first.revoked_events) == second.assignment
        assert first.assignment | second.assignment == frozenset(range(PARTITIONS))
    finally:
        for member in (first, second):
            if member.is_alive():
                member.stop()
    check_members([first, second])


def test_static_member_restarts_without_a_rebalance(broker_factory):
    from confluent_kafka import ConsumerGroupState
    from confluent_kafka.admin import AdminClient

    broker = broker_factory("static", FAST_GROUPS)
    topic = unique_topic("static")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    group = unique_group("static")
    static = {"session.timeout.ms": 30000}
    a = Member("confluent", broker.bootstrap, group, topic, "a", **{"group.instance.id": "instance-a"}, **static)
    b = Member("confluent", broker.bootstrap, group, topic, "b", **{"group.instance.id": "instance-b"}, **static)
    a.start()
    b.start()
    restarted = None
    try:
        wait_until(lambda: split_evenly([a, b]) and len(a.assignment) == 3, 30, "two static members, 3 each")
        time.sleep(0.5)
        b_events = (len(b.assigned_events), len(b.revoked_events))
        a_partitions = a.assignment
        a.stop()  # a static member's close sends no LeaveGroup
        restarted = Member("confluent", broker.bootstrap, group, topic, "a-again",
                           **{"group.instance.id": "instance-a"}, **static)
        restarted.start()
        wait_until(lambda: restarted.assignment == a_partitions, 15, "the restarted member getting its partitions")
        time.sleep(1.0)
        assert (len(b.assigned_events), len(b.revoked_events)) == b_events, "b saw a rebalance"
        assert b.assignment == frozenset(range(PARTITIONS)) - a_partitions
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        described = admin.describe_consumer_groups([group], request_timeout=10)[group].result()
        assert described.state == ConsumerGroupState.STABLE
        assert sorted(m.group_instance_id for m in described.members) == ["instance-a", "instance-b"]
    finally:
        for member in (a, b, restarted):
            if member is not None and member.is_alive():
                member.stop()
    check_members([m for m in (a, b, restarted) if m is not None])


@pytest.mark.skipif(not kcat_available(), reason="kcat is not installed")
def test_kcat_balanced_consumer_consumes_and_commits(broker_factory):
    broker = broker_factory("kcat", FAST_GROUPS)
    topic = unique_topic("kcat-group")
    create_topic(broker.bootstrap, topic, 3)
    group = unique_group("kcat")
    first = [Msg(None, f"first-{i}".encode(), (), None, i % 3) for i in range(15)]
    produce("confluent", broker.bootstrap, topic, first)

    def kcat_group(count: int) -> list[str]:
        proc = subprocess.run(
            [KCAT, "-b", broker.bootstrap, "-G", group, "-c", str(count), "-f", "%s\\n", "-q",
             "-X", "auto.offset.reset=earliest", "-X", "enable.auto.commit=true",
             "-X", "auto.commit.interval.ms=100", topic],
            capture_output=True, timeout=60)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
        return proc.stdout.decode().split()

    assert sorted(kcat_group(15)) == sorted(m.value.decode() for m in first)
    second = [Msg(None, f"second-{i}".encode(), (), None, i % 3) for i in range(6)]
    produce("confluent", broker.bootstrap, topic, second)
    # The same group again: it starts from kcat's committed offsets, so only the new messages come.
    assert sorted(kcat_group(6)) == sorted(m.value.decode() for m in second)
