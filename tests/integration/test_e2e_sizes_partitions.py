"""Big messages and many partitions, through every client.

~1 MiB records exercise the size limits (topic max.message.bytes, client request limits, and the
broker returning a first batch larger than the consumer's fetch sizes, KIP-74); a 24-partition topic
checks that each record lands in and is read back from the partition it was sent to, with every
partition's offsets contiguous.
"""

from __future__ import annotations

import random
import time

import pytest
from client_adapters import (
    CLIENTS,
    Msg,
    assert_roundtrip,
    consume,
    create_topic,
    produce,
    unique_topic,
)

pytestmark = [pytest.mark.timeout(120)]

MIB = 1024 * 1024
TOPIC_MAX_MESSAGE_BYTES = 2 * MIB + 4096
PRODUCER_LIMITS = {
    "confluent": {"message.max.bytes": 4 * MIB},
    "kafka-python": {"max_request_size": 4 * MIB},
    "aiokafka": {"max_request_size": 4 * MIB},
}
PAIRS = [(CLIENTS[i], CLIENTS[(i + 1) % len(CLIENTS)]) for i in range(len(CLIENTS))]


def _big_messages(count: int, size: int, seed: int) -> list[Msg]:
    rng = random.Random(seed)
    base_ts = int(time.time() * 1000) - 60_000
    return [Msg(f"big-{i}".encode(), rng.randbytes(size), (("n", str(i).encode()),), base_ts + i, 0)
            for i in range(count)]


@pytest.mark.parametrize("producer,consumer", PAIRS, ids=[f"{p}-to-{c}" for p, c in PAIRS])
def test_one_mebibyte_messages(broker, producer, consumer):
    topic = unique_topic(f"big-{producer}")
    create_topic(broker.bootstrap, topic, 1, {"max.message.bytes": str(TOPIC_MAX_MESSAGE_BYTES)})
    sent = _big_messages(6, MIB, seed=len(producer))
    delivered = produce(producer, broker.bootstrap, topic, sent, config=PRODUCER_LIMITS[producer])
    # consumers keep their default fetch sizes (1 MiB per partition): a record batch larger than
    # that must still be returned whole when it is the first one (KIP-74)
    consumed = consume(consumer, broker.bootstrap, topic, [0], len(sent), timeout_s=60)
    assert_roundtrip(sent, delivered, consumed, label=f"1 MiB {producer} -> {consumer}")


def test_message_larger_than_topic_limit_is_rejected(broker):
    from confluent_kafka import KafkaError, Producer

    topic = unique_topic("toolarge")
    create_topic(broker.bootstrap, topic, 1, {"max.message.bytes": str(MIB)})
    producer = Producer({"bootstrap.servers": broker.bootstrap, "message.max.bytes": 4 * MIB,
                         "linger.ms": 0, "acks": "all", "message.timeout.ms": 20_000, "retries": 0})
    reports = []
    producer.produce(topic, value=b"x" * (MIB + 200_000), key=b"big", partition=0,
                     on_delivery=lambda err, msg: reports.append((err, msg.offset())))
    producer.flush(25)
    producer.produce(topic, value=b"y" * 500_000, key=b"ok", partition=0,
                     on_delivery=lambda err, msg: reports.append((err, msg.offset())))
    producer.flush(25)
    assert len(reports) == 2, f"delivery reports: {reports}"
    too_large_err, _ = reports[0]
    assert too_large_err is not None and too_large_err.code() == KafkaError.MSG_SIZE_TOO_LARGE, (
        f"a 1.2 MB record on a topic with max.message.bytes=1 MiB: expected MESSAGE_TOO_LARGE, got {too_large_err}")
    ok_err, ok_offset = reports[1]
    assert ok_err is None and ok_offset == 0, f"the following small record: {ok_err}, offset {ok_offset}"


PARTITIONS = 24


@pytest.mark.parametrize("producer,consumer", PAIRS, ids=[f"{p}-to-{c}" for p, c in PAIRS])
def test_twenty_four_partitions(broker, producer, consumer):
    topic = unique_topic(f"p24-{producer}")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    base_ts = int(time.time() * 1000) - 10_000
    sent = [Msg(f"k{i}".encode(), f"p{i % PARTITIONS}-n{i}".encode() * 8, (("i", str(i).encode()),),
                base_ts + i, i % PARTITIONS) for i in range(PARTITIONS * 10)]
    delivered = produce(producer, broker.bootstrap, topic, sent, codec="lz4")
    assert {d.partition for d in delivered} == set(range(PARTITIONS))
    consumed = consume(consumer, broker.bootstrap, topic, range(PARTITIONS), len(sent), timeout_s=45)
    assert_roundtrip(sent, delivered, consumed, label=f"24 partitions {producer} -> {consumer}")
    per_partition = {}
    for rec in consumed.records:
        per_partition.setdefault(rec.partition, []).append(rec.offset)
    assert sorted(per_partition) == list(range(PARTITIONS))
    assert all(offsets == list(range(10)) for offsets in per_partition.values()), per_partition


def test_keyed_messages_spread_over_partitions_and_stay_together(broker):
    topic = unique_topic("p24-keys")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    keys = [f"user-{n}".encode() for n in range(60)]
    sent = [Msg(keys[i % len(keys)], f"event-{i}".encode()) for i in range(600)]
    delivered = produce("confluent", broker.bootstrap, topic, sent)
    partition_of_key: dict[bytes, set[int]] = {}
    for d in delivered:
        partition_of_key.setdefault(sent[d.index].key, set()).add(d.partition)
    assert all(len(parts) == 1 for parts in partition_of_key.values()), "one key went to several partitions"
    used = set().union(*partition_of_key.values())
    assert len(used) >= 12, f"60 keys landed on only {len(used)} of 24 partitions"
    consumed = consume("kafka-python", broker.bootstrap, topic, range(PARTITIONS), len(sent), timeout_s=45)
    assert_roundtrip(sent, delivered, consumed, label="keyed, default partitioner")
