"""ListOffsets through the clients: earliest, latest, and lookup by timestamp.

Records carry explicit, increasing CreateTime timestamps and are written as three separate batches, so
a timestamp lookup must find the first *record* (not the first batch) whose timestamp is >= the
target, and a target after the last record must answer "no offset" (-1 / None).
"""

from __future__ import annotations

import asyncio
import time

import pytest
from client_adapters import (
    TIMESTAMP_APPEND,
    Msg,
    confluent_consumer_config,
    consume,
    create_topic,
    produce,
    unique_topic,
)

pytestmark = [pytest.mark.timeout(60)]

BATCHES = 3
PER_BATCH = 10
STEP_MS = 100


@pytest.fixture(scope="module")
def timed_topic(broker):
    """A 1-partition topic with 30 records at base_ts + 100 * offset, written in 3 batches."""
    topic = unique_topic("times")
    create_topic(broker.bootstrap, topic, 1)
    base_ts = int(time.time() * 1000) - 600_000
    for batch in range(BATCHES):
        msgs = [Msg(b"k", f"r{n}".encode(), (), base_ts + STEP_MS * n, 0)
                for n in range(batch * PER_BATCH, (batch + 1) * PER_BATCH)]
        delivered = produce("confluent", broker.bootstrap, topic, msgs)
        assert [d.offset for d in delivered] == list(range(batch * PER_BATCH, (batch + 1) * PER_BATCH))
    return topic, base_ts


def _expectations(base_ts: int) -> list[tuple[int, int | None]]:
    """(target timestamp, expected offset or None for 'no such record')."""
    last = BATCHES * PER_BATCH - 1
    return [
        (base_ts - 100_000, 0),               # before everything: the first record
        (base_ts, 0),                         # exactly the first record
        (base_ts + STEP_MS * 15, 15),         # exact hit in the middle of the second batch
        (base_ts + STEP_MS * 15 - 50, 15),    # between records 14 and 15
        (base_ts + STEP_MS * 10 - 1, 10),     # just before the first record of a batch
        (base_ts + STEP_MS * last, last),     # the last record
        (base_ts + STEP_MS * last + 1, None),  # after the last record
    ]


def test_offsets_for_times_confluent(broker, timed_topic):
    from confluent_kafka import Consumer, TopicPartition

    topic, base_ts = timed_topic
    consumer = Consumer(confluent_consumer_config(broker.bootstrap))
    try:
        for target, expected in _expectations(base_ts):
            (result,) = consumer.offsets_for_times([TopicPartition(topic, 0, target)], timeout=10)
            assert result.error is None, f"offsets_for_times({target}): {result.error}"
            want = -1 if expected is None else expected
            assert result.offset == want, f"timestamp {target - base_ts:+d} ms from base: offset {result.offset}, want {want}"
    finally:
        consumer.close()


def test_offsets_for_times_kafka_python(broker, timed_topic):
    from kafka import KafkaConsumer, TopicPartition

    topic, base_ts = timed_topic
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False)
    tp = TopicPartition(topic, 0)
    try:
        for target, expected in _expectations(base_ts):
            result = consumer.offsets_for_times({tp: target})[tp]
            if expected is None:
                assert result is None, f"timestamp after the last record: got {result}"
            else:
                assert result is not None and result.offset == expected, (
                    f"timestamp {target - base_ts:+d} ms from base: got {result}, want offset {expected}")
                assert result.timestamp == base_ts + STEP_MS * expected, f"returned timestamp {result.timestamp}"
    finally:
        consumer.close()


def test_offsets_for_times_aiokafka(broker, timed_topic):
    from aiokafka import AIOKafkaConsumer, TopicPartition

    topic, base_ts = timed_topic

    async def run():
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False)
        await consumer.start()
        tp = TopicPartition(topic, 0)
        try:
            found = []
            for target, _ in _expectations(base_ts):
                result = (await consumer.offsets_for_times({tp: target}))[tp]
                found.append(None if result is None else result.offset)
            begin = (await consumer.beginning_offsets([tp]))[tp]
            end = (await consumer.end_offsets([tp]))[tp]
            return found, begin, end
        finally:
            await consumer.stop()

    found, begin, end = asyncio.run(run())
    assert found == [expected for _, expected in _expectations(base_ts)]
    assert (begin, end) == (0, BATCHES * PER_BATCH)


def test_watermarks_confluent(broker, timed_topic):
    from confluent_kafka import Consumer, TopicPartition

    topic, _ = timed_topic
    empty = unique_topic("empty")
    create_topic(broker.bootstrap, empty, 1)
    consumer = Consumer(confluent_consumer_config(broker.bootstrap))
    try:
        assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False) == (
            0, BATCHES * PER_BATCH)
        assert consumer.get_watermark_offsets(TopicPartition(empty, 0), timeout=10, cached=False) == (0, 0)
    finally:
        consumer.close()


def test_beginning_and_end_offsets_kafka_python(broker, timed_topic):
    from kafka import KafkaConsumer, TopicPartition

    topic, _ = timed_topic
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False)
    tp = TopicPartition(topic, 0)
    try:
        assert consumer.beginning_offsets([tp]) == {tp: 0}
        assert consumer.end_offsets([tp]) == {tp: BATCHES * PER_BATCH}
        # the position after seek_to_end is the log end offset; after seeking back we can read the tail
        consumer.assign([tp])
        consumer.seek_to_end(tp)
        assert consumer.position(tp) == BATCHES * PER_BATCH
        consumer.seek(tp, BATCHES * PER_BATCH - 2)
        records = []
        deadline = time.monotonic() + 10
        while len(records) < 2 and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=200).values():
                records.extend(recs)
        assert [r.offset for r in records] == [BATCHES * PER_BATCH - 2, BATCHES * PER_BATCH - 1]
    finally:
        consumer.close()


def test_consumer_past_log_end_resets_per_policy(broker, timed_topic):
    """An out-of-range fetch position must answer OFFSET_OUT_OF_RANGE so auto.offset.reset applies."""
    from confluent_kafka import Consumer, TopicPartition

    topic, _ = timed_topic
    consumer = Consumer(confluent_consumer_config(broker.bootstrap, **{"auto.offset.reset": "earliest"}))
    try:
        consumer.list_topics(topic, timeout=10)
        consumer.assign([TopicPartition(topic, 0, 1000)])  # far beyond the log end (30)
        first = None
        deadline = time.monotonic() + 15
        while first is None and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                first = msg
        assert first is not None, "no record after positioning past the log end with auto.offset.reset=earliest"
        assert first.offset() == 0
    finally:
        consumer.close()


def test_log_append_time_topic_overrides_producer_timestamps(broker):
    """message.timestamp.type=LogAppendTime: consumers see the broker's append time, typed as such."""
    topic = unique_topic("logappend")
    create_topic(broker.bootstrap, topic, 1, {"message.timestamp.type": "LogAppendTime"})
    old_ts = int(time.time() * 1000) - 86_400_000
    before_ms = int(time.time() * 1000)
    produce("confluent", broker.bootstrap, topic, [Msg(b"k", f"v{i}".encode(), (), old_ts + i, 0) for i in range(5)])
    after_ms = int(time.time() * 1000)
    for client in ("confluent", "kafka-python"):
        records = consume(client, broker.bootstrap, topic, [0], 5, timeout_s=15).records
        assert len(records) == 5
        for r in records:
            assert r.timestamp_type == TIMESTAMP_APPEND, f"{client}: {r.timestamp_type}"
            assert before_ms - 1000 <= r.timestamp_ms <= after_ms + 1000, (
                f"{client}: LogAppendTime {r.timestamp_ms} outside [{before_ms}, {after_ms}]")
