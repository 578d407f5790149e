"""Topic auto-creation: on when auto.create.topics.enable=true, off (UNKNOWN_TOPIC_OR_PARTITION) when false.

Kafka creates a topic on a Metadata request only if the broker allows it *and* the request asks for it
(allow_auto_topic_creation, Metadata v4+): producers ask, confluent-kafka consumers do not by default.
"""

from __future__ import annotations

import time

import pytest
from client_adapters import Msg, confluent_consumer_config, consume, create_topic, produce, unique_topic

pytestmark = [pytest.mark.timeout(60)]


def _topic_metadata(bootstrap: str, topic: str):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics.get(topic)


def test_produce_to_unknown_topic_creates_it(broker):
    topic = unique_topic("auto-produce")
    delivered = produce("confluent", broker.bootstrap, topic, [Msg(b"k", b"v", partition=None)])
    assert [(d.partition, d.offset) for d in delivered] == [(0, 0)]
    metadata = _topic_metadata(broker.bootstrap, topic)
    assert metadata is not None and len(metadata.partitions) == 1, "num.partitions=1 applies to auto-created topics"
    consumed = consume("aiokafka", broker.bootstrap, topic, [0], 1, timeout_s=15)
    assert [(r.key, r.value) for r in consumed.records] == [(b"k", b"v")]


def test_producer_metadata_for_unknown_topic_creates_it(broker):
    from kafka import KafkaProducer

    topic = unique_topic("auto-meta")
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, max_block_ms=15_000)
    try:
        assert producer.partitions_for(topic) == {0}
    finally:
        producer.close()
    assert _topic_metadata(broker.bootstrap, topic) is not None


def test_consumer_metadata_does_not_create(broker):
    """confluent-kafka consumers send allow_auto_topic_creation=false (allow.auto.create.topics=false)."""
    from confluent_kafka import Consumer, KafkaError

    topic = unique_topic("auto-consumer")
    consumer = Consumer(confluent_consumer_config(broker.bootstrap))
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        assert metadata.error is not None and metadata.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, metadata.error
    finally:
        consumer.close()
    time.sleep(0.3)
    assert _topic_metadata(broker.bootstrap, topic) is None, "a consumer's metadata request created the topic"


def test_auto_create_disabled(broker_factory):
    from confluent_kafka import KafkaError, Producer
    from kafka import KafkaProducer
    from kafka.errors import KafkaTimeoutError

    broker = broker_factory("no-auto-create", {"auto.create.topics.enable": "false"})
    topic = unique_topic("no-auto")

    producer = Producer({"bootstrap.servers": broker.bootstrap, "topic.metadata.propagation.max.ms": 1000,
                         "message.timeout.ms": 8000})
    metadata = producer.list_topics(topic, timeout=10).topics[topic]
    assert metadata.error is not None and metadata.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, metadata.error
    reports = []
    producer.produce(topic, value=b"v", on_delivery=lambda err, msg: reports.append(err))
    producer.flush(15)
    assert len(reports) == 1 and reports[0] is not None, f"produce to a missing topic: {reports}"
    assert reports[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC), reports[0]

    kp = KafkaProducer(bootstrap_servers=broker.bootstrap, max_block_ms=2000)
    try:
        with pytest.raises(KafkaTimeoutError):
            kp.send(topic, b"v").get(timeout=5)
    finally:
        kp.close()

    assert _topic_metadata(broker.bootstrap, topic) is None, "the topic was created although auto-create is off"
    # explicit creation still works on this broker
    create_topic(broker.bootstrap, topic, 2)
    delivered = produce("confluent", broker.bootstrap, topic, [Msg(b"k", b"v", partition=1)])
    assert [(d.partition, d.offset) for d in delivered] == [(1, 0)]
