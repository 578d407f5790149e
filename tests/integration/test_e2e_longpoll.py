"""A parked fetch is answered as soon as data is appended, not when fetch.wait.max.ms expires.

The consumer waits on an empty partition with fetch.wait.max.ms=5000.  While nothing arrives the
broker must hold the fetch (few Fetch requests, counted from librdkafka's statistics); a record
produced later must reach the consumer in well under a second.  A broker that answers empty fetches
at once passes the latency check but fails the request count; one that sleeps out max_wait fails the
latency check.
"""

from __future__ import annotations

import json
import time

import pytest
from client_adapters import confluent_consumer_config, create_topic, unique_topic

pytestmark = [pytest.mark.timeout(60)]

WAIT_MAX_MS = 5000
IDLE_S = 2.5
MAX_DELIVERY_S = 1.0


def _connected_producer(bootstrap: str, topic: str):
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": "all"})
    producer.list_topics(topic, timeout=10)
    return producer


def test_long_poll_woken_by_append_confluent(broker):
    from confluent_kafka import Consumer, TopicPartition

    topic = unique_topic("longpoll-ck")
    create_topic(broker.bootstrap, topic, 1)
    fetch_counts: list[tuple[float, int]] = []  # (monotonic time, Fetch requests sent so far)

    def on_stats(raw: str) -> None:
        stats = json.loads(raw)
        sent = sum(b.get("req", {}).get("Fetch", 0) for b in stats["brokers"].values() if b.get("nodeid", -1) >= 0)
        fetch_counts.append((time.monotonic(), sent))

    consumer = Consumer(confluent_consumer_config(broker.bootstrap, **{
        "fetch.wait.max.ms": WAIT_MAX_MS, "fetch.min.bytes": 1, "statistics.interval.ms": 100,
        "stats_cb": on_stats}))
    producer = _connected_producer(broker.bootstrap, topic)
    try:
        consumer.list_topics(topic, timeout=10)
        consumer.assign([TopicPartition(topic, 0, 0)])
        idle_start = time.monotonic()
        while time.monotonic() < idle_start + IDLE_S:
            msg = consumer.poll(0.1)
            assert msg is None or msg.error() is not None, f"unexpected record {msg.value() if msg else None}"
        # count from 0.8 s in: by then the consumer has its position and has sent its first Fetch
        window = [(t, n) for t, n in fetch_counts if t >= idle_start + 0.8]
        assert len(window) >= 2, f"too few librdkafka statistics samples: {fetch_counts}"
        idle_fetches = window[-1][1] - window[0][1]
        assert idle_fetches <= 2, (
            f"{idle_fetches} Fetch requests in {window[-1][0] - window[0][0]:.1f}s on an empty partition with "
            f"fetch.wait.max.ms={WAIT_MAX_MS}: the broker does not hold empty fetches")

        sent_at = time.monotonic()
        producer.produce(topic, value=b"wake up", partition=0)
        producer.poll(0)
        received = None
        while received is None and time.monotonic() - sent_at < 10:
            msg = consumer.poll(0.02)
            if msg is not None and msg.error() is None:
                received = msg
        latency = time.monotonic() - sent_at
        assert received is not None and received.value() == b"wake up", "record never arrived"
        print(f"idle Fetch requests: {idle_fetches}; produce-to-consume latency {latency * 1000:.1f} ms")
        assert latency < MAX_DELIVERY_S, (
            f"record arrived after {latency:.2f}s with fetch.wait.max.ms={WAIT_MAX_MS}: the parked fetch was "
            f"not woken by the append")
    finally:
        producer.flush(10)
        consumer.close()


def test_long_poll_woken_by_append_kafka_python(broker):
    from kafka import KafkaConsumer, TopicPartition

    topic = unique_topic("longpoll-kp")
    create_topic(broker.bootstrap, topic, 1)
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                             fetch_max_wait_ms=WAIT_MAX_MS, fetch_min_bytes=1)
    producer = _connected_producer(broker.bootstrap, topic)
    tp = TopicPartition(topic, 0)
    try:
        consumer.assign([tp])
        consumer.seek(tp, 0)
        idle_until = time.monotonic() + IDLE_S
        while time.monotonic() < idle_until:
            assert not consumer.poll(timeout_ms=100), "record on an empty partition"
        sent_at = time.monotonic()
        producer.produce(topic, value=b"wake up", partition=0)
        producer.poll(0)
        received = []
        while not received and time.monotonic() - sent_at < 10:
            for records in consumer.poll(timeout_ms=20).values():
                received.extend(records)
        latency = time.monotonic() - sent_at
        assert [r.value for r in received] == [b"wake up"]
        assert latency < MAX_DELIVERY_S, f"record arrived after {latency:.2f}s with fetch_max_wait_ms={WAIT_MAX_MS}"
    finally:
        producer.flush(10)
        consumer.close()
