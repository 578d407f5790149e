"""The records an old single-node metadata file becomes, and the refusals of what cannot be converted."""

from __future__ import annotations

import json
import uuid

import pytest

from cluster.broker.legacy_metadata import (
    LEGACY_METADATA_FILE,
    LegacyMetadataError,
    conversion_records,
    read_legacy_metadata,
)
from cluster.metadata import MetadataDelta, MetadataImage

TOPIC_ID = uuid.UUID(int=7)


def _write(tmp_path, topics, block_end=3000) -> None:
    (tmp_path / LEGACY_METADATA_FILE).write_text(json.dumps(
        {"version": 1, "topics": topics, "producer_id_block_end": block_end}))


def _apply(image: MetadataImage, records) -> MetadataImage:
    delta = MetadataDelta(image)
    for record in records:
        delta.replay(record)
    return delta.apply()


def test_topics_and_producer_ids_become_records_then_nothing_more(tmp_path):
    _write(tmp_path, [{"name": "orders", "topic_id": str(TOPIC_ID), "num_partitions": 2,
                       "configs": {"retention.ms": "1000"}}])
    legacy = read_legacy_metadata(str(tmp_path))
    records = conversion_records(legacy, MetadataImage.EMPTY, node_id=4)
    image = _apply(MetadataImage.EMPTY, records)
    topic = image.topics.get_topic("orders")
    assert topic.topic_id == TOPIC_ID and sorted(topic.partitions) == [0, 1]
    assert all(p.leader == 4 and list(p.replicas) == [4] and p.leader_epoch == 0 for p in topic.partitions.values())
    assert image.configs.topic_config("orders") == {"retention.ms": "1000"}
    assert image.producer_ids.next_producer_id == 3000
    assert conversion_records(legacy, image, node_id=4) == []   # a re-run after a crash adds nothing


def test_a_topic_of_the_same_name_with_another_id_is_refused(tmp_path):
    _write(tmp_path, [{"name": "orders", "topic_id": str(TOPIC_ID), "num_partitions": 1}])
    other = read_legacy_metadata(str(tmp_path))
    _write(tmp_path, [{"name": "orders", "topic_id": str(uuid.UUID(int=8)), "num_partitions": 1}])
    image = _apply(MetadataImage.EMPTY, conversion_records(other, MetadataImage.EMPTY, node_id=1))
    with pytest.raises(LegacyMetadataError, match="two different topics"):
        conversion_records(read_legacy_metadata(str(tmp_path)), image, node_id=1)


def test_no_file_is_nothing_to_convert_and_a_broken_one_says_what_to_do(tmp_path):
    assert read_legacy_metadata(str(tmp_path)) is None
    (tmp_path / LEGACY_METADATA_FILE).write_text("{not json")
    with pytest.raises(LegacyMetadataError, match="Restore it from a backup"):
        read_legacy_metadata(str(tmp_path))
