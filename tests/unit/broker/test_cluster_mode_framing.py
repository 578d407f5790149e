"""Cluster mode's Raft entry framing (a batch of metadata records per entry) and its image-backed topic view."""

from __future__ import annotations

import uuid

import pytest

from cluster.broker.cluster_mode import decode_batch, encode_batch
from cluster.broker.topic_view import ImageTopicStore
from cluster.core.errors import ProtocolDecodeError
from cluster.metadata import MetadataDelta, MetadataImage
from cluster.wire.metadata_records import config_record, partition_record, topic_record


def _topic_records(name: str, topic_id: uuid.UUID, partitions: int) -> list:
    records = [topic_record.TopicRecord(name=name, topic_id=topic_id)]
    for index in range(partitions):
        records.append(partition_record.PartitionRecord(
            partition_id=index, topic_id=topic_id, replicas=[index % 3 + 1], isr=[index % 3 + 1],
            leader=index % 3 + 1, leader_epoch=0, partition_epoch=0))
    records.append(config_record.ConfigRecord(resource_type=2, resource_name=name, name="retention.ms",
                                              value="1000"))
    return records


def test_a_batch_of_records_round_trips_in_order():
    records = _topic_records("orders", uuid.uuid4(), 4)
    decoded = decode_batch(encode_batch(records))
    assert [type(r).__name__ for r in decoded] == [type(r).__name__ for r in records]
    assert [getattr(r, "partition_id", None) for r in decoded] == [getattr(r, "partition_id", None) for r in records]
    assert decode_batch(b"") == []


def test_a_truncated_batch_is_corruption_not_skipped():
    payload = encode_batch(_topic_records("orders", uuid.uuid4(), 2))
    with pytest.raises(ProtocolDecodeError):
        decode_batch(payload[:-3])


def test_image_topic_store_mirrors_the_image():
    topic_id = uuid.uuid4()
    delta = MetadataDelta(MetadataImage.EMPTY)
    for record in decode_batch(encode_batch(_topic_records("orders", topic_id, 3))):
        delta.replay(record)
    store = ImageTopicStore("cluster-a")
    store.refresh(delta.apply())
    record = store.topics["orders"]
    assert (record.topic_id, record.num_partitions, record.replication_factor) == (topic_id, 3, 1)
    assert record.configs == {"retention.ms": "1000"}
    assert store.topic_by_id(topic_id) is record
    assert store.topic_by_id(uuid.uuid4()) is None
