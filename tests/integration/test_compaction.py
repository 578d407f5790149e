"""Log compaction seen by a real client (confluent-kafka) against a broker process.

A keyed topic with cleanup.policy=compact and tiny segments: the broker's background cleaner (run every
log.retention.check.interval.ms) must compact it to the latest value per key at the offsets the producer
was given, remove the tombstone once delete.retention.ms has passed, and a consumer that keeps re-reading
the partition while this happens must always see strictly increasing offsets and every key's latest value.
"""

from __future__ import annotations

import threading
import time

import pytest
from client_adapters import confluent_consumer_config, create_topic

pytestmark = [pytest.mark.timeout(150)]

KEYS = [b"k%d" % i for i in range(10)]
ROUNDS = 15
DELETE_RETENTION_MS = 3000


def _produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes | None]]) -> list[int]:
    """One batch per message (flush after each, so segments roll); returns the assigned offsets."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 0})
    offsets: list[int] = []

    def on_delivery(err, msg) -> None:
        assert err is None, err
        offsets.append(msg.offset())

    for key, value in messages:
        producer.produce(topic, key=key, value=value, partition=0, on_delivery=on_delivery)
        producer.flush(10)
    assert producer.flush(10) == 0
    assert len(offsets) == len(messages)
    return offsets


def _read_all(consumer, topic: str, timeout_s: float = 20.0) -> list[tuple[int, bytes, bytes | None]]:
    """Every record from the start to the high watermark, in order."""
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    _low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    records: list[tuple[int, bytes, bytes | None]] = []
    deadline = time.monotonic() + timeout_s
    while (not records or records[-1][0] < high - 1) and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        records.append((msg.offset(), msg.key(), msg.value()))
    consumer.unassign()
    assert records and records[-1][0] == high - 1, f"read stopped at {records[-1:]} below high watermark {high}"
    return records


def _wait_until(predicate, what: str, timeout_s: float = 40.0):
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def test_keyed_topic_compacts_while_a_consumer_reads(broker_factory):
    from confluent_kafka import Consumer

    broker = broker_factory("compaction", {"log.retention.check.interval.ms": "1000"})
    topic = "compacted"
    create_topic(broker.bootstrap, topic, 1, {
        "cleanup.policy": "compact",
        "segment.bytes": "2048",
        "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": str(DELETE_RETENTION_MS),
    })

    history = [(key, b"%s-round-%d" % (key, r)) for r in range(ROUNDS) for key in KEYS]
    offsets = _produce(broker.bootstrap, topic, history)
    latest = {key: (offset, value) for (key, value), offset in zip(history, offsets, strict=True)}
    (tombstone_offset,) = _produce(broker.bootstrap, topic, [(KEYS[0], None)])
    latest[KEYS[0]] = (tombstone_offset, None)
    # Unique filler keys push the tombstone out of the active segment, which is never cleaned.
    fillers = [(b"filler-%d" % i, b"f" * 40) for i in range(60)]
    for (key, value), offset in zip(fillers, _produce(broker.bootstrap, topic, fillers), strict=True):
        latest[key] = (offset, value)
    end_offset = offsets[-1] + 1 + 1 + len(fillers)
    assert len(list(broker.partition_dir(topic, 0).glob("*.log"))) >= 5

    # A consumer re-reads the whole partition in a loop while the broker compacts it.
    passes: list[list[tuple[int, bytes, bytes | None]]] = []
    reader_errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        consumer = Consumer(confluent_consumer_config(broker.bootstrap))
        try:
            while not stop.is_set():
                passes.append(_read_all(consumer, topic))
        except BaseException as exc:  # reported by the main thread
            reader_errors.append(exc)
        finally:
            consumer.close()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    checker = Consumer(confluent_consumer_config(broker.bootstrap))
    try:
        def compacted():
            records = _read_all(checker, topic)
            keys = [key for _, key, _ in records]
            return records if len(keys) == len(set(keys)) else None

        records = _wait_until(compacted, "the topic to compact to one record per key")
        # Exactly the latest record of every key, at the offset the producer was given; k0 is its tombstone.
        assert {key: (offset, value) for offset, key, value in records} == latest
        assert records[-1][0] == end_offset - 1

        def tombstone_gone():
            records = _read_all(checker, topic)
            return records if all(key != KEYS[0] for _, key, _ in records) else None

        records = _wait_until(tombstone_gone, "the tombstone to disappear after delete.retention.ms")
        expected = {key: entry for key, entry in latest.items() if key != KEYS[0]}
        assert {key: (offset, value) for offset, key, value in records} == expected
    finally:
        checker.close()
        stop.set()
        thread.join(30)
    assert not reader_errors, reader_errors
    assert len(passes) >= 2
    for records in passes:
        read_offsets = [offset for offset, _, _ in records]
        assert read_offsets == sorted(set(read_offsets)), "offsets must strictly increase within a read"
        last_seen: dict[bytes, tuple[int, bytes | None]] = {}
        for offset, key, value in records:
            last_seen[key] = (offset, value)
        for key, entry in latest.items():
            if key == KEYS[0] and key not in last_seen:
                continue  # the tombstone may already be gone (with every older value of k0)
            assert last_seen[key] == entry, f"{key!r}: read {last_seen[key]}, latest is {entry}"


def test_compacted_topic_rejects_records_without_key(broker_factory):
    from confluent_kafka import KafkaError, Producer

    broker = broker_factory("compaction-keys", {})
    create_topic(broker.bootstrap, "compacted-keys", 1, {"cleanup.policy": "compact,delete"})
    create_topic(broker.bootstrap, "plain", 1)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0, "retries": 0})
    errors: dict[str, object] = {}

    def on_delivery(err, msg) -> None:
        errors[msg.topic()] = err

    producer.produce("compacted-keys", key=None, value=b"no key", partition=0, on_delivery=on_delivery)
    producer.produce("plain", key=None, value=b"no key", partition=0, on_delivery=on_delivery)
    assert producer.flush(20) == 0
    assert errors["compacted-keys"] is not None and errors["compacted-keys"].code() == KafkaError.INVALID_RECORD
    assert errors["plain"] is None
