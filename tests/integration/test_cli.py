"""`kraftpy topics|produce|consume` as a user runs them: real processes against a real broker process.

Uses the shared `broker` fixture (tests/integration/conftest.py).  Every command runs as
`python -m cluster ...` and is judged by its exit status, stdout and stderr.  Interop: records written
by `kraftpy produce` are read by confluent-kafka (librdkafka), and records written by confluent-kafka
(with the murmur2_random partitioner, Java's placement) are read by `kraftpy consume`, which also proves
our murmur2 partitioning agrees with librdkafka's byte for byte.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from cluster.client import keyed_partition

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

REPO_ROOT = Path(__file__).resolve().parents[2]


def kraftpy(broker, *args: str, stdin: bytes | None = None, bootstrap: str | None = None,
            timeout_s: float = 60) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "cluster", *args, "--bootstrap-server", bootstrap or broker.bootstrap]
    return subprocess.run(command, input=stdin, capture_output=True, timeout=timeout_s, cwd=REPO_ROOT)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout: {result.stdout.decode(errors='replace')}\n"
        f"stderr: {result.stderr.decode(errors='replace')}")
    return result


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_topics_create_list_describe_alter_delete(broker):
    topic = unique("cli-admin")
    created = ok(kraftpy(broker, "topics", "create", topic, "--partitions", "2", "--replication-factor", "1",
                         "--config", "retention.ms=123456"))
    assert f"Created topic {topic}." in created.stdout.decode()
    assert topic in ok(kraftpy(broker, "topics", "list")).stdout.decode().split("\n")

    described = ok(kraftpy(broker, "topics", "describe", topic)).stdout.decode().strip().split("\n")
    assert described[0].startswith(f"Topic: {topic}\tTopicId: ")
    assert "\tPartitionCount: 2\tReplicationFactor: 1\tConfigs: retention.ms=123456" in described[0]
    assert [line.split("\t")[2] for line in described[1:]] == ["Partition: 0", "Partition: 1"]
    for line in described[1:]:
        fields = dict(field.split(": ", 1) for field in line.strip("\t").split("\t"))
        assert fields["Replicas"] == fields["Isr"] == fields["Leader"]
        assert int(fields["LeaderEpoch"]) >= 0

    altered = ok(kraftpy(broker, "topics", "alter", topic, "--partitions", "4"))
    assert f"Topic {topic} now has 4 partitions." in altered.stdout.decode()
    described = ok(kraftpy(broker, "topics", "describe", topic)).stdout.decode()
    assert "PartitionCount: 4" in described and "Partition: 3\t" in described

    ok(kraftpy(broker, "topics", "delete", topic))
    assert topic not in ok(kraftpy(broker, "topics", "list")).stdout.decode().split("\n")


def test_kafka_errors_exit_1_naming_the_error_code(broker):
    topic = unique("cli-dup")
    ok(kraftpy(broker, "topics", "create", topic, "--partitions", "1"))
    duplicate = kraftpy(broker, "topics", "create", topic)
    assert duplicate.returncode == 1
    assert "TOPIC_ALREADY_EXISTS" in duplicate.stderr.decode()

    shrink = kraftpy(broker, "topics", "alter", topic, "--partitions", "1")
    assert shrink.returncode == 1 and "INVALID_PARTITIONS" in shrink.stderr.decode()

    missing = kraftpy(broker, "topics", "delete", unique("cli-missing"))
    assert missing.returncode == 1 and "UNKNOWN_TOPIC_OR_PARTITION" in missing.stderr.decode()

    bad_config = kraftpy(broker, "topics", "create", unique("cli-badcfg"), "--config", "no.such.config=1")
    assert bad_config.returncode == 1 and "INVALID_CONFIG" in bad_config.stderr.decode()

    not_there = kraftpy(broker, "consume", unique("cli-nosuch"), "--timeout-ms", "500")
    assert not_there.returncode == 1 and "UNKNOWN_TOPIC_OR_PARTITION" in not_there.stderr.decode()


def test_unreachable_bootstrap_exits_2_with_the_address(broker):
    from broker_process import free_port

    address = f"127.0.0.1:{free_port()}"
    for command in (["topics", "list"], ["consume", "t", "--timeout-ms", "100"], ["produce", "t"]):
        result = kraftpy(broker, *command, bootstrap=address, stdin=b"x\n")
        assert result.returncode == 2, result.stderr
        assert f"cannot reach broker {address}" in result.stderr.decode()


def test_produce_text_with_keys_and_headers_then_consume_from_beginning(broker):
    topic = unique("cli-text")
    ok(kraftpy(broker, "topics", "create", topic, "--partitions", "3"))
    lines = [f"key-{i}|value {i} with spaces" for i in range(30)]
    produced = ok(kraftpy(broker, "produce", topic, "--key-separator", "|", "--header", "origin=cli",
                          "--header", "empty=", stdin=("\n".join(lines) + "\n").encode()))
    assert f"Produced 30 records to {topic}" in produced.stderr.decode()

    consumed = ok(kraftpy(broker, "consume", topic, "--from-beginning", "--max-messages", "30",
                          "--print-key", "--print-headers", "--print-offset", "--timeout-ms", "10000"))
    assert "Processed a total of 30 messages" in consumed.stderr.decode()
    rows = [line.split("\t") for line in consumed.stdout.decode().splitlines()]
    assert len(rows) == 30
    seen = {}
    for partition_field, offset_field, headers, key, value in rows:
        partition = int(partition_field.removeprefix("Partition:"))
        assert headers == "origin:cli,empty:"
        assert partition == keyed_partition(key.encode(), 3), "keyed records must follow murmur2"
        seen[key] = value
        assert offset_field.startswith("Offset:")
    assert seen == {f"key-{i}": f"value {i} with spaces" for i in range(30)}
    # Within each partition, the file order of the keys is kept.
    for partition in range(3):
        keys = [row[3] for row in rows if row[0] == f"Partition:{partition}"]
        assert keys == sorted(keys, key=lambda k: int(k.split("-")[1]))


def test_json_round_trip_keeps_binary_nulls_headers_partitions_and_timestamps(broker):
    topic = unique("cli-json")
    ok(kraftpy(broker, "topics", "create", topic, "--partitions", "2"))
    inputs = [
        {"key": "k1", "value": "héllo", "headers": [["h", "1"], ["h", "2"]], "partition": 1, "timestamp": 1000},
        {"key": None, "value": {"base64": "AP8="}, "partition": 0, "timestamp": 2000},
        {"key": {"base64": "/w=="}, "value": None, "headers": {"t": None}, "partition": 1, "timestamp": 3000},
    ]
    stdin = "\n".join(json.dumps(obj) for obj in inputs).encode() + b"\n"
    ok(kraftpy(broker, "produce", topic, "--format", "json", "--compression", "gzip", stdin=stdin))
    consumed = ok(kraftpy(broker, "consume", topic, "--from-beginning", "--max-messages", "3",
                          "--format", "json", "--timeout-ms", "10000"))
    records = sorted((json.loads(line) for line in consumed.stdout.decode().splitlines()),
                     key=lambda r: r["timestamp"])
    assert [(r["partition"], r["offset"], r["timestamp"]) for r in records] == [(1, 0, 1000), (0, 0, 2000),
                                                                               (1, 1, 3000)]
    assert [(r["key"], r["value"], r["headers"]) for r in records] == [
        ("k1", "héllo", [["h", "1"], ["h", "2"]]),
        (None, {"base64": "AP8="}, []),
        ({"base64": "/w=="}, None, [["t", None]]),
    ]
    assert all(r["topic"] == topic and r["timestamp_type"] == "CreateTime" for r in records)

    # Consumer JSON is producer JSON: copy the topic through the CLI and compare.
    copy = unique("cli-json-copy")
    ok(kraftpy(broker, "topics", "create", copy, "--partitions", "2"))
    ok(kraftpy(broker, "produce", copy, "--format", "json", stdin=consumed.stdout))
    copied = ok(kraftpy(broker, "consume", copy, "--from-beginning", "--max-messages", "3", "--format", "json",
                        "--timeout-ms", "10000"))
    strip = [{k: v for k, v in json.loads(line).items() if k != "topic"} for line in copied.stdout.decode().splitlines()]
    original = [{k: v for k, v in r.items() if k != "topic"} for r in records]
    assert sorted(strip, key=lambda r: r["timestamp"]) == original


def test_consume_from_an_offset_and_idle_timeout(broker):
    topic = unique("cli-offset")
    ok(kraftpy(broker, "topics", "create", topic, "--partitions", "1"))
    ok(kraftpy(broker, "produce", topic, stdin=b"v0\nv1\nv2\nv3\nv4\n"))

    from_three = ok(kraftpy(broker, "consume", topic, "--partition", "0", "--offset", "3", "--max-messages", "5",
                            "--timeout-ms", "1500"))
    assert from_three.stdout == b"v3\nv4\n"  # stopped by the idle timeout, with status 0

    earliest = ok(kraftpy(broker, "consume", topic, "--offset", "earliest", "--max-messages", "2"))
    assert earliest.stdout == b"v0\nv1\n"

    started = time.monotonic()
    latest = ok(kraftpy(broker, "consume", topic, "--offset", "latest", "--timeout-ms", "700"))
    assert latest.stdout == b"" and "Processed a total of 0 messages" in latest.stderr.decode()
    assert time.monotonic() - started < 30

    beyond = kraftpy(broker, "consume", topic, "--offset", "99", "--timeout-ms", "1000")
    assert beyond.returncode == 1 and "OFFSET_OUT_OF_RANGE" in beyond.stderr.decode()


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_every_compression_codec_round_trips(broker, codec):
    topic = unique(f"cli-{codec}")
    ok(kraftpy(broker, "topics", "create", topic, "--partitions", "1"))
    values = [f"{codec}-{i}-" + "x" * i for i in range(50)]
    ok(kraftpy(broker, "produce", topic, "--compression", codec, "--acks", "1",
               stdin=("\n".join(values) + "\n").encode()))
    consumed = ok(kraftpy(broker, "consume", topic, "--from-beginning", "--max-messages", "50",
                          "--timeout-ms", "10000"))
    assert consumed.stdout.decode().splitlines() == values


def test_acks_zero_records_arrive(broker):
    topic = unique("cli-acks0")
    ok(kraftpy(broker, "topics", "create", topic, "--partitions", "1"))
    produced = ok(kraftpy(broker, "produce", topic, "--acks", "0", stdin=b"a\nb\n"))
    assert "acks=0" in produced.stderr.decode()
    consumed = ok(kraftpy(broker, "consume", topic, "--from-beginning", "--max-messages", "2",
                          "--timeout-ms", "10000"))
    assert consumed.stdout == b"a\nb\n"


def test_bad_input_line_exits_2_after_sending_the_good_ones(broker):
    topic = unique("cli-badjson")
    ok(kraftpy(broker, "topics", "create", topic, "--partitions", "1"))
    result = kraftpy(broker, "produce", topic, "--format", "json", stdin=b'{"value": "good"}\nnot json\n')
    assert result.returncode == 2
    assert "stdin line 2: invalid JSON" in result.stderr.decode()
    consumed = ok(kraftpy(broker, "consume", topic, "--from-beginning", "--max-messages", "1",
                          "--timeout-ms", "5000"))
    assert consumed.stdout == b"good\n"


# -- interop with confluent-kafka (librdkafka) ---------------------------------------------------------


def test_confluent_kafka_reads_what_kraftpy_produced(broker):
    confluent_kafka = pytest.importorskip("confluent_kafka")
    topic = unique("cli-to-ck")
    ok(kraftpy(broker, "topics", "create", topic, "--partitions", "2"))
    lines = [f"k{i}=v{i}" for i in range(20)]
    ok(kraftpy(broker, "produce", topic, "--key-separator", "=", "--header", "from=kraftpy",
               "--compression", "lz4", stdin=("\n".join(lines) + "\n").encode()))

    consumer = confluent_kafka.Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("unused"),
                                         "enable.auto.commit": False})
    try:
        consumer.assign([confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
                         for p in range(2)])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 20 and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            got.append((message.partition(), message.key(), message.value(), message.headers()))
    finally:
        consumer.close()
    assert sorted((k, v) for _, k, v, _ in got) == sorted((f"k{i}".encode(), f"v{i}".encode()) for i in range(20))
    assert all(headers == [("from", b"kraftpy")] for *_, headers in got)
    assert all(partition == keyed_partition(key, 2) for partition, key, _, _ in got)


def test_kraftpy_reads_what_confluent_kafka_produced_and_agrees_on_murmur2(broker):
    confluent_kafka = pytest.importorskip("confluent_kafka")
    topic = unique("ck-to-cli")
    ok(kraftpy(broker, "topics", "create", topic, "--partitions", "5"))
    producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap, "partitioner": "murmur2_random",
                                         "compression.type": "zstd"})
    keys = [f"user-{i}".encode() for i in range(40)] + [b"", b"\xff\x00\x80"]
    for i, key in enumerate(keys):
        producer.produce(topic, key=key, value=b"payload-%d" % i, headers=[("n", str(i).encode())])
    assert producer.flush(30) == 0

    consumed = ok(kraftpy(broker, "consume", topic, "--from-beginning", "--max-messages", str(len(keys)),
                          "--format", "json", "--timeout-ms", "10000"))
    records = [json.loads(line) for line in consumed.stdout.decode().splitlines()]
    assert len(records) == len(keys)
    from cluster.client.console import decode_json_bytes

    for record in records:
        index = int(record["headers"][0][1])
        key = decode_json_bytes(record["key"], "key")
        assert key == keys[index]
        assert record["value"] == f"payload-{index}"
        # librdkafka's murmur2_random placed it; our partitioner must pick the same partition.
        assert record["partition"] == keyed_partition(key, 5), f"key {key!r}"


def test_produce_auto_creates_a_missing_topic_like_kafka_producers(broker):
    topic = unique("cli-auto")  # the fixture's broker runs with auto.create.topics.enable=true
    ok(kraftpy(broker, "produce", topic, stdin=b"first\n"))
    assert topic in ok(kraftpy(broker, "topics", "list")).stdout.decode().split("\n")
    consumed = ok(kraftpy(broker, "consume", topic, "--from-beginning", "--max-messages", "1"))
    assert consumed.stdout == b"first\n"
