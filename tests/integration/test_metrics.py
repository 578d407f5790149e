"""The broker's HTTP metrics endpoint, scraped while real clients (confluent-kafka) produce and consume.

Issue 7 part 5 asks that the values move with traffic: bytes in and out for the topic grow by at least the
payload, messages in by the record count, Produce/Fetch request counters and latency histogram counts grow,
consumer lag appears for a committing group and drops to 0 once it has read everything; /healthz and /readyz
answer 200 on a serving broker.
"""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid

import pytest
from broker_process import free_port
from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

pytestmark = [pytest.mark.timeout(90)]

RECORDS = 200
VALUE_BYTES = 1000


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def value(values, name: str, **labels) -> float:
    return values.get((name, tuple(sorted(labels.items()))), 0.0)


def http_status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def metrics_broker(broker_factory):
    port = free_port()
    process = broker_factory("metrics-broker", {"metrics.listener": f"127.0.0.1:{port}",
                                                "group.initial.rebalance.delay.ms": "0"})
    return process, port


def test_metrics_move_with_traffic(metrics_broker):
    process, port = metrics_broker
    topic = f"metrics-{uuid.uuid4().hex[:8]}"
    group = f"metrics-group-{uuid.uuid4().hex[:8]}"
    assert http_status(port, "/healthz") == 200
    assert http_status(port, "/readyz") == 200
    assert "serving metrics on http://127.0.0.1:" in process.log_since(0, max_bytes=1_000_000)
    before = scrape(port)

    producer = Producer({"bootstrap.servers": process.bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(RECORDS):
        producer.produce(topic, value=bytes([i % 256]) * VALUE_BYTES, partition=0)
    assert producer.flush(30) == 0
    after_produce = scrape(port)
    payload = RECORDS * VALUE_BYTES
    assert value(after_produce, "kraftpy_topic_bytes_in_total", topic=topic) >= payload
    assert value(after_produce, "kraftpy_topic_messages_in_total", topic=topic) == RECORDS
    for api in ("Produce", "Metadata"):
        assert value(after_produce, "kraftpy_requests_total", api=api) > value(before, "kraftpy_requests_total",
                                                                                api=api)
    assert (value(after_produce, "kraftpy_request_latency_seconds_count", api="Produce")
            > value(before, "kraftpy_request_latency_seconds_count", api="Produce"))
    assert value(after_produce, "kraftpy_log_size_bytes", topic=topic, partition="0") >= payload
    assert value(after_produce, "kraftpy_log_flush_latency_seconds_count") > 0  # acks=all waited for fsyncs
    assert value(after_produce, "kraftpy_under_replicated_partitions") == 0
    assert value(after_produce, "kraftpy_offline_partitions") == 0
    assert value(after_produce, "kraftpy_broker_ready") == 1

    consumer = Consumer({"bootstrap.servers": process.bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.subscribe([topic])
        received = 0
        first_half_committed = False
        deadline_polls = 300
        while received < RECORDS and deadline_polls:
            deadline_polls -= 1
            message = consumer.poll(0.2)
            if message is None or message.error():
                continue
            received += 1
            if received == RECORDS // 2 and not first_half_committed:
                consumer.commit(message=message, asynchronous=False)
                first_half_committed = True
                lagging = scrape(port)
                assert value(lagging, "kraftpy_consumer_group_lag", group=group, topic=topic,
                             partition="0") == RECORDS // 2
        assert received == RECORDS
        consumer.commit(offsets=[TopicPartition(topic, 0, RECORDS)], asynchronous=False)
    finally:
        consumer.close()
    after_consume = scrape(port)
    assert value(after_consume, "kraftpy_topic_bytes_out_total", topic=topic) >= payload
    assert (value(after_consume, "kraftpy_requests_total", api="Fetch")
            > value(after_produce, "kraftpy_requests_total", api="Fetch"))
    assert (value(after_consume, "kraftpy_request_latency_seconds_count", api="Fetch")
            > value(after_produce, "kraftpy_request_latency_seconds_count", api="Fetch"))
    assert value(after_consume, "kraftpy_group_rebalances_total") >= 1
    assert value(after_consume, "kraftpy_consumer_group_lag", group=group, topic=topic, partition="0") == 0


def test_request_errors_are_counted_per_api_and_code(metrics_broker):
    process, port = metrics_broker
    producer = Producer({"bootstrap.servers": process.bootstrap, "acks": "all"})
    topic = f"metrics-err-{uuid.uuid4().hex[:8]}"
    producer.produce(topic, value=b"x", partition=0)
    assert producer.flush(30) == 0
    before = scrape(port)
    consumer = Consumer({"bootstrap.servers": process.bootstrap, "group.id": "g-" + topic,
                         "auto.offset.reset": "error", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, 1000)])  # far past the log end: OFFSET_OUT_OF_RANGE
        for _ in range(20):
            message = consumer.poll(0.2)
            if message is not None and message.error():
                break
    finally:
        consumer.close()
    after = scrape(port)
    assert (value(after, "kraftpy_request_errors_total", api="Fetch", error="OFFSET_OUT_OF_RANGE")
            > value(before, "kraftpy_request_errors_total", api="Fetch", error="OFFSET_OUT_OF_RANGE"))
