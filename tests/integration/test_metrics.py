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
from cluster_process import broker_ids
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


# -- cluster mode: the metadata quorum's metrics, and the Grafana dashboard against a live exposition ---------------
@pytest.fixture
def quorum_broker(broker_factory, tmp_path):
    """A broker in cluster mode: a metadata quorum of one voter (itself), metrics on a known port."""
    from cluster.storage.meta_properties import write_meta_properties
    port, controller_port = free_port(), free_port()
    data_dir = tmp_path / "quorum-broker" / "data"
    write_meta_properties(str(data_dir), "metrics-" + uuid.uuid4().hex[:10], 1)
    process = broker_factory("quorum-broker", {"metrics.listener": f"127.0.0.1:{port}",
                                               "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
                                               "group.initial.rebalance.delay.ms": "0"})
    assert process.data_dir == data_dir, "broker_factory's layout changed: meta.properties went elsewhere"
    return process, port


def wait_until(predicate, timeout_s: float = 10.0) -> bool:
    import time
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_raft_metrics_move_with_metadata_traffic(quorum_broker):
    from confluent_kafka.admin import AdminClient, NewTopic
    process, port = quorum_broker
    assert wait_until(lambda: value(scrape(port), "kraftpy_raft_leader_id") == 1)
    assert wait_until(lambda: broker_ids(process.bootstrap) == {1}), "the broker never got unfenced"
    before = scrape(port)
    assert value(before, "kraftpy_raft_is_leader") == 1
    assert value(before, "kraftpy_raft_epoch") >= 1
    assert value(before, "kraftpy_isr_shrinks_total") == 0 and ("kraftpy_isr_expands_total", ()) in before
    admin = AdminClient({"bootstrap.servers": process.bootstrap})
    names = [f"raft-metrics-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    for name in names:   # one CreateTopics each: each is one controller decision, one committed metadata entry
        admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)])[name].result(15)
    # The high watermark and the applied offset move on by at least one entry per topic.
    assert wait_until(lambda: value(scrape(port), "kraftpy_raft_applied_offset")
                      >= value(before, "kraftpy_raft_applied_offset") + len(names)), scrape(port)
    after = scrape(port)
    assert value(after, "kraftpy_raft_high_watermark") > value(before, "kraftpy_raft_high_watermark")
    assert value(after, "kraftpy_raft_commit_lag") == max(value(after, "kraftpy_raft_high_watermark")
                                                           - value(after, "kraftpy_raft_applied_offset"), 0)
    assert wait_until(lambda: value(scrape(port), "kraftpy_raft_commit_lag") == 0)


def test_dashboard_references_only_exported_metrics(quorum_broker):
    """Every metric the Grafana dashboard's PromQL names is exported by a live broker (after some traffic)."""
    import json
    from pathlib import Path

    from cluster.observability.dashboard import exported_metrics, missing_metrics, referenced_metrics
    process, port = quorum_broker
    assert wait_until(lambda: broker_ids(process.bootstrap) == {1}), "the broker never got unfenced"
    topic = f"dash-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": process.bootstrap, "acks": "all"})
    producer.produce(topic, value=b"x" * 100, partition=0)
    assert producer.flush(30) == 0
    assert wait_until(lambda: value(scrape(port), "kraftpy_raft_leader_id") >= 0)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        exposition = response.read().decode()
    dashboard = json.loads((Path(__file__).resolve().parents[2] / "deploy/grafana/kraftpy-dashboard.json").read_text())
    assert len(referenced_metrics(dashboard)) >= 15
    assert missing_metrics(dashboard, exposition) == set()
    # The check is not vacuous: a dashboard naming a metric the broker does not export fails it.
    dashboard["panels"].append({"type": "stat", "targets": [{"expr": "sum(kraftpy_raft_leader_idd)"}]})
    assert missing_metrics(dashboard, exposition) == {"kraftpy_raft_leader_idd"}
    assert "kraftpy_raft_leader_idd" not in exported_metrics(exposition)
