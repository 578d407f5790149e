"""What clients see of storage: many segments, and restarts (graceful and kill -9) that keep everything.

With a 64 KiB log.segment.bytes a few MB of records span dozens of segments; reads from the start,
from the middle and by timestamp must cross segment boundaries seamlessly, before and after the broker
rebuilds its state from disk.  A graceful restart must keep topics, partition counts, topic configs,
records and offsets.
"""

from __future__ import annotations

import time

import pytest
from client_adapters import (
    Msg,
    assert_roundtrip,
    confluent_consumer_config,
    consume,
    create_topic,
    produce,
    unique_topic,
)

pytestmark = [pytest.mark.timeout(120)]

SEGMENT_BYTES = 64 * 1024


def _offset_for_time(bootstrap: str, topic: str, timestamp_ms: int) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(confluent_consumer_config(bootstrap))
    try:
        (result,) = consumer.offsets_for_times([TopicPartition(topic, 0, timestamp_ms)], timeout=10)
        assert result.error is None, result.error
        return result.offset
    finally:
        consumer.close()


def test_many_segments_survive_kill_9(broker_factory):
    broker = broker_factory("segments", {"log.segment.bytes": str(SEGMENT_BYTES)})
    topic = "segmented"
    create_topic(broker.bootstrap, topic, 1)
    base_ts = int(time.time() * 1000) - 100_000
    sent = [Msg(f"k{i}".encode(), (f"{i:06d}-" + "s" * 1000).encode(), (("i", str(i).encode()),), base_ts + i, 0)
            for i in range(3000)]
    delivered = produce("confluent", broker.bootstrap, topic, sent, config={"batch.size": 16384})
    segments = sorted(broker.partition_dir(topic, 0).glob("*.log"))
    assert len(segments) >= 20, f"3 MB with log.segment.bytes={SEGMENT_BYTES} made only {len(segments)} segments"

    def check(label: str) -> None:
        consumed = consume("kafka-python", broker.bootstrap, topic, [0], len(sent), timeout_s=45)
        assert_roundtrip(sent, delivered, consumed, label=label)
        for offset in (0, 777, 1500, 2999):
            assert _offset_for_time(broker.bootstrap, topic, base_ts + offset) == offset, f"{label}: time lookup"

    check("before restart")
    broker.kill9()
    broker.start()
    check("after kill -9")
    more = produce("aiokafka", broker.bootstrap, topic, [Msg(b"after", b"restart", (), None, 0)])
    assert more[0].offset == len(sent)


def test_graceful_restart_keeps_topics_configs_and_data(broker_factory):
    from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

    broker = broker_factory("graceful")
    topics = {unique_topic("keep-a"): 1, unique_topic("keep-b"): 4}
    configs = {"retention.ms": "7200000", "max.message.bytes": "2000000"}
    sent, delivered = {}, {}
    for topic, partitions in topics.items():
        create_topic(broker.bootstrap, topic, partitions, configs)
        sent[topic] = [Msg(f"k{i}".encode(), f"v{i}".encode(), (), int(time.time() * 1000), i % partitions)
                       for i in range(40)]
        delivered[topic] = produce("confluent", broker.bootstrap, topic, sent[topic], codec="zstd")

    rc = broker.stop()
    assert rc == 0, f"SIGTERM: broker exited with status {rc}"
    broker.start()

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    metadata = admin.list_topics(timeout=10).topics
    for topic, partitions in topics.items():
        assert topic in metadata and len(metadata[topic].partitions) == partitions, f"{topic} after restart"
        resource = ConfigResource(ResourceType.TOPIC, topic)
        entries = admin.describe_configs([resource])[resource].result(15)
        assert {k: entries[k].value for k in configs} == configs
        consumed = consume("confluent", broker.bootstrap, topic, range(partitions), 40, timeout_s=20)
        assert_roundtrip(sent[topic], delivered[topic], consumed, label=f"{topic} after graceful restart")
