"""`kraftpy groups list|describe|reset-offsets|delete` against a real broker process and real consumers.

Two confluent-kafka consumers form a group over a 3-partition topic and commit known offsets; then the CLI
must show the group, its members, their decoded assignments and each partition's committed offset, log end
offset and lag.  While the group is active, reset-offsets and delete refuse (NON_EMPTY_GROUP, exit 1).
Once the consumers have left, a reset dry run prints the plan and changes nothing, ``--execute`` commits the
new offsets (a resumed consumer starts exactly there), and delete removes the group.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from client_adapters import Msg, create_topic, produce, unique_topic

from cluster.client import KafkaClient

pytestmark = [pytest.mark.timeout(180)]

REPO_ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 3
PER_PARTITION = 10
COMMITTED = {0: 10, 1: 4, 2: 7}  # what the members commit: lag 0, 6, 3


def kraftpy(broker, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "cluster", *args, "--bootstrap-server", broker.bootstrap]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout


def table(text: str, column: str) -> list[dict[str, str]]:
    """The rows of the first whitespace-aligned table whose header line starts with GROUP and has ``column``."""
    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("GROUP") and column in line.split())
    header = lines[start].split()
    rows = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        rows.append(dict(zip(header, line.split(), strict=True)))
    return rows


def committed(broker, group: str) -> dict[tuple[str, int], int]:
    async def fetch():
        async with KafkaClient(broker.bootstrap) as client:
            return {tp: c.offset for tp, c in (await client.offset_fetch(group)).items()}
    return asyncio.run(fetch())


def consumer(broker, group: str, name: str):
    from confluent_kafka import Consumer

    return Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "client.id": name,
                     "auto.offset.reset": "earliest", "enable.auto.commit": False,
                     "session.timeout.ms": 6000, "heartbeat.interval.ms": 300, "fetch.wait.max.ms": 100})


def poll_until(consumers, predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for c in consumers:
            c.poll(0.05)
        if predicate():
            return
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


@pytest.fixture
def topic(broker):
    name = unique_topic("groups-cli")
    create_topic(broker.bootstrap, name, PARTITIONS)
    produce("confluent", broker.bootstrap, name,
            [Msg(None, f"p{p}-{i}".encode(), (), None, p) for p in range(PARTITIONS) for i in range(PER_PARTITION)])
    return name


def test_describe_reset_and_delete_a_group_of_real_consumers(broker, topic):
    from confluent_kafka import TopicPartition

    group = f"cli-group-{uuid.uuid4().hex[:8]}"
    members = [consumer(broker, group, "member-a"), consumer(broker, group, "member-b")]
    try:
        for c in members:
            c.subscribe([topic])

        def split() -> bool:
            owned = [{tp.partition for tp in c.assignment()} for c in members]
            return all(owned) and sorted(owned[0] | owned[1]) == [0, 1, 2] and not owned[0] & owned[1]
        poll_until(members, split, 30, "both members to share the 3 partitions")
        owners = {tp.partition: c for c in members for tp in c.assignment()}
        for partition, offset in COMMITTED.items():
            owners[partition].commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)
        member_ids = {partition: c.memberid() for partition, c in owners.items()}

        # -- list and describe an active group ---------------------------------------------------------
        assert group in ok(kraftpy(broker, "groups", "list")).split("\n")
        states = {row["GROUP"]: row["STATE"] for row in table(ok(kraftpy(broker, "groups", "list", "--state")),
                                                                   "STATE")}
        assert states[group] == "Stable"

        described = ok(kraftpy(broker, "groups", "describe", group))
        assert f"Consumer group '{group}': state Stable, protocol type consumer, protocol range, 2 member(s)" \
            in described
        rows = {int(row["PARTITION"]): row for row in table(described, "LAG")}
        assert sorted(rows) == [0, 1, 2]
        for partition, offset in COMMITTED.items():
            row = rows[partition]
            assert (row["TOPIC"], row["CURRENT-OFFSET"], row["LOG-END-OFFSET"], row["LAG"]) == (
                topic, str(offset), str(PER_PARTITION), str(PER_PARTITION - offset))
            assert row["CONSUMER-ID"] == member_ids[partition]
            assert row["HOST"] == "/127.0.0.1"
        by_member = {row["CONSUMER-ID"]: row for row in table(described, "ASSIGNMENT")}
        assert set(by_member) == set(member_ids.values())
        for c in members:
            expected = sorted(tp.partition for tp in c.assignment())
            row = by_member[c.memberid()]
            assert row["CLIENT-ID"] in ("member-a", "member-b")
            assert row["#PARTITIONS"] == str(len(expected))
            assert row["ASSIGNMENT"] == f"{topic}({','.join(map(str, expected))})"

        # -- an active group refuses reset and delete -----------------------------------------------------
        refused = kraftpy(broker, "groups", "reset-offsets", group, "--topic", topic, "--to-earliest", "--execute")
        assert refused.returncode == 1, refused
        assert "NON_EMPTY_GROUP" in refused.stderr and "inactive" in refused.stderr and "Stable" in refused.stderr
        not_deleted = kraftpy(broker, "groups", "delete", group)
        assert not_deleted.returncode == 1 and "NON_EMPTY_GROUP" in not_deleted.stderr, not_deleted
        assert committed(broker, group) == {(topic, p): o for p, o in COMMITTED.items()}
    finally:
        for c in members:
            c.close()

    # -- the group is Empty now: offsets stay, members are gone ----------------------------------------------
    described = ok(kraftpy(broker, "groups", "describe", group))
    assert "state Empty" in described and "has no active members" in described
    rows = {int(row["PARTITION"]): row for row in table(described, "LAG")}
    assert {p: (row["CURRENT-OFFSET"], row["LAG"], row["CONSUMER-ID"]) for p, row in rows.items()} == {
        p: (str(o), str(PER_PARTITION - o), "-") for p, o in COMMITTED.items()}

    # -- dry runs print the plan and change nothing ----------------------------------------------------------
    before = committed(broker, group)
    plan = ok(kraftpy(broker, "groups", "reset-offsets", group, "--topic", topic, "--to-earliest"))
    assert {int(r["PARTITION"]): r["NEW-OFFSET"] for r in table(plan, "NEW-OFFSET")} == {0: "0", 1: "0", 2: "0"}
    plan = ok(kraftpy(broker, "groups", "reset-offsets", group, "--topic", f"{topic}:1", "--shift-by", "-2",
                      "--dry-run"))
    assert [(r["TOPIC"], r["PARTITION"], r["NEW-OFFSET"]) for r in table(plan, "NEW-OFFSET")] == [(topic, "1", "2")]
    plan = ok(kraftpy(broker, "groups", "reset-offsets", group, "--topic", topic, "--to-datetime",
                      "2000-01-01T00:00:00+00:00"))
    assert {r["NEW-OFFSET"] for r in table(plan, "NEW-OFFSET")} == {"0"}
    plan = ok(kraftpy(broker, "groups", "reset-offsets", group, "--all-topics", "--to-datetime",
                      "2999-01-01T00:00:00+00:00"))
    assert {r["NEW-OFFSET"] for r in table(plan, "NEW-OFFSET")} == {str(PER_PARTITION)}
    plan = ok(kraftpy(broker, "groups", "reset-offsets", group, "--topic", topic, "--to-offset", "99"))
    assert {r["NEW-OFFSET"] for r in table(plan, "NEW-OFFSET")} == {str(PER_PARTITION)}  # clamped to the log end
    assert committed(broker, group) == before

    # -- --execute commits, and a consumer resumes exactly there ----------------------------------------------
    ok(kraftpy(broker, "groups", "reset-offsets", group, "--topic", f"{topic}:1", "--shift-by", "-2", "--execute"))
    ok(kraftpy(broker, "groups", "reset-offsets", group, "--topic", f"{topic}:0", "--to-offset", "5", "--execute"))
    expected = {0: 5, 1: 2, 2: 7}
    assert committed(broker, group) == {(topic, p): o for p, o in expected.items()}
    resumed = consumer(broker, group, "resumer")
    first: dict[int, int] = {}
    try:
        resumed.subscribe([topic])
        deadline = time.monotonic() + 30
        while len(first) < PARTITIONS and time.monotonic() < deadline:
            message = resumed.poll(0.2)
            if message is not None and not message.error():
                first.setdefault(message.partition(), message.offset())
    finally:
        resumed.close()
    assert first == expected

    # -- delete the (again Empty) group ---------------------------------------------------------------------
    assert "was successful" in ok(kraftpy(broker, "groups", "delete", group))
    assert group not in ok(kraftpy(broker, "groups", "list")).split("\n")
    assert committed(broker, group) == {}
    gone = kraftpy(broker, "groups", "describe", group)
    assert gone.returncode == 1 and "GROUP_ID_NOT_FOUND" in gone.stderr, gone


def test_usage_and_unknown_group_errors(broker):
    missing = f"no-such-group-{uuid.uuid4().hex[:8]}"
    described = kraftpy(broker, "groups", "describe", missing)
    assert described.returncode == 1 and "GROUP_ID_NOT_FOUND" in described.stderr, described
    deleted = kraftpy(broker, "groups", "delete", missing)
    assert deleted.returncode == 1 and "GROUP_ID_NOT_FOUND" in deleted.stderr, deleted
    no_scope = kraftpy(broker, "groups", "reset-offsets", missing, "--to-earliest")
    assert no_scope.returncode == 2 and "--topic" in no_scope.stderr, no_scope
    no_strategy = kraftpy(broker, "groups", "reset-offsets", missing, "--topic", "t")
    assert no_strategy.returncode == 2, no_strategy
    bad_time = kraftpy(broker, "groups", "reset-offsets", missing, "--topic", "t", "--to-datetime", "yesterday")
    assert bad_time.returncode == 2 and "ISO-8601" in bad_time.stderr, bad_time
