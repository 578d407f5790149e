"""Metadata snapshots: an image written as records rebuilds an equal image; the payload codec refuses corruption;
a snapshot loaded over an existing image tells the broker exactly what changed for it."""

from __future__ import annotations

import struct

import pytest
from metadata_testlib import Harness  # tests/unit/metadata is on sys.path (rootdir-relative test modules)

from cluster.core.errors import CorruptRecordError
from cluster.metadata import (
    BROKER_RESOURCE,
    MetadataImage,
    NewTopic,
    decode_snapshot,
    encode_snapshot,
    image_to_records,
    snapshot_delta,
)
from cluster.metadata.records import record_name
from cluster.metadata.snapshot import SNAPSHOT_MAGIC, image_from_records, records_between
from cluster.wire.metadata_records import feature_level_record


def busy_harness() -> Harness:
    """Every kind of state an image holds: brokers in each state, topics (one recreated), configs, ids, features."""
    h = Harness()
    h.start_brokers(4, racks=["a", "b", "a", None])
    h.controller.replay(feature_level_record.FeatureLevelRecord(name="metadata.version", feature_level=21))
    h.commit(h.controller.create_topics([NewTopic("orders", 3, 3, configs={"cleanup.policy": "compact"}),
                                         NewTopic("events", 2, 2), NewTopic("gone", 1, 1)]))
    h.commit(h.controller.delete_topics(["gone"]))
    h.commit(h.controller.create_topics([NewTopic("gone", 2, 1)]))   # same name, new topic id
    h.commit(h.controller.create_partitions("events", 4))
    h.heartbeat(1, 0, want_fence=True)                               # leaders move away: epochs go up
    h.heartbeat(2, 0, want_shutdown=True)
    h.commit(h.controller.allocate_producer_ids(0, h.image.cluster.brokers[0].broker_epoch))
    h.commit(h.controller.alter_configs([(BROKER_RESOURCE, "", "log.retention.ms", "1000"),
                                         (BROKER_RESOURCE, "3", "log.retention.ms", "5")]))
    return h


def test_image_written_as_records_replays_to_an_equal_image():
    image = busy_harness().image
    assert image.producer_ids.next_producer_id > 0 and image.features.finalized_levels
    assert any(b.fenced for b in image.cluster.brokers.values())
    assert any(b.in_controlled_shutdown for b in image.cluster.brokers.values())
    assert any(p.leader_epoch > 0 for t in image.topics.by_id.values() for p in t.partitions.values())
    records = image_to_records(image)
    rebuilt = image_from_records(records, image.offset)
    assert rebuilt == image
    rebuilt.check_invariants()
    # one record per thing, nothing historical: no PartitionChangeRecord, Fence/Unfence or RemoveTopic
    names = {record_name(r) for r in records}
    assert names == {"FeatureLevelRecord", "RegisterBrokerRecord", "TopicRecord", "PartitionRecord", "ConfigRecord",
                     "ProducerIdsRecord"}
    assert sum(record_name(r) == "PartitionRecord" for r in records) == image.topics.partition_count()


def test_empty_image_has_no_records_and_round_trips():
    empty = MetadataImage.EMPTY
    assert image_to_records(empty) == []
    snapshot = decode_snapshot(encode_snapshot(empty, 1, 1))
    assert (snapshot.end_offset, snapshot.epoch, snapshot.image) == (1, 1, empty)


def test_snapshot_payload_round_trips_id_and_image():
    image = busy_harness().image
    data = encode_snapshot(image, image.offset + 3, 7)
    assert data[:4] == SNAPSHOT_MAGIC
    snapshot = decode_snapshot(data)
    assert (snapshot.end_offset, snapshot.epoch) == (image.offset + 3, 7)
    assert snapshot.image == image
    assert encode_snapshot(snapshot.image, image.offset + 3, 7) == data   # deterministic bytes


def test_image_must_lie_below_the_snapshot_end():
    image = busy_harness().image
    with pytest.raises(AssertionError):
        encode_snapshot(image, image.offset, 1)


def test_every_single_byte_flip_is_detected():
    data = encode_snapshot(busy_harness().image, 1000, 3)
    for position in range(len(data)):
        corrupt = bytearray(data)
        corrupt[position] ^= 0x40
        with pytest.raises(CorruptRecordError):
            decode_snapshot(bytes(corrupt))


@pytest.mark.parametrize("keep", [0, 3, 29, -1, -5])
def test_truncated_payload_is_detected(keep):
    data = encode_snapshot(busy_harness().image, 1000, 3)
    with pytest.raises(CorruptRecordError):
        decode_snapshot(data[:keep])


def _with_crc(body: bytes) -> bytes:
    import crc32c
    return body + struct.pack(">I", crc32c.crc32c(body))


def test_well_checksummed_but_malformed_payloads_are_refused():
    data = encode_snapshot(busy_harness().image, 1000, 3)
    body = data[:-4]
    with pytest.raises(CorruptRecordError, match="not a metadata snapshot"):
        decode_snapshot(_with_crc(b"XXXX" + body[4:]))
    with pytest.raises(CorruptRecordError, match="format version"):
        decode_snapshot(_with_crc(body[:4] + struct.pack(">H", 99) + body[6:]))
    with pytest.raises(CorruptRecordError, match="after the last"):
        decode_snapshot(_with_crc(body + b"\x00"))
    count_at = 4 + 2 + 8 + 4 + 8
    (count,) = struct.unpack_from(">I", body, count_at)
    with pytest.raises(CorruptRecordError):
        decode_snapshot(_with_crc(body[:count_at] + struct.pack(">I", count + 1) + body[count_at + 4:]))
    with pytest.raises(CorruptRecordError, match="image offset"):
        decode_snapshot(_with_crc(body[:18] + struct.pack(">q", 1000) + body[26:]))


def test_snapshot_over_an_older_image_reports_local_changes_and_reaches_the_snapshot():
    h = Harness()
    h.start_brokers(3)
    h.commit(h.controller.create_topics([NewTopic("kept", 1, 3), NewTopic("deleted", 1, 3)]))
    leader = h.image.topics.get_topic("kept").partitions[0].leader
    other = (leader + 1) % 3
    h.commit(h.controller.create_topics([NewTopic("same", -1, -1, assignments={0: [other]})]))
    older = h.image
    h.commit(h.controller.delete_topics(["deleted"]))
    h.commit(h.controller.create_topics([NewTopic("new", 2, 3)]))
    h.heartbeat(leader, 0, want_fence=True)   # "kept" changes leader; "same" (only on `other`) does not change
    newer = h.image
    assert older.topics.get_topic("same").partitions == newer.topics.get_topic("same").partitions

    delta = snapshot_delta(older, newer)
    assert delta.apply() == newer
    deleted_id = older.topics.get_topic("deleted").topic_id
    on_leader = delta.local_changes(leader)
    assert on_leader.deletes == {("deleted", deleted_id, 0)}
    assert ("kept", 0) in on_leader.followers and set(on_leader.leaders) == set()   # fenced: leads nothing
    assert {("new", 0), ("new", 1)} <= set(on_leader.followers)
    on_other = delta.local_changes(other)
    # a partition identical in both images is not reported: the replica manager already runs it
    assert ("same", 0) not in on_other.leaders and ("same", 0) not in on_other.followers
    assert ("kept", 0) in set(on_other.leaders) | set(on_other.followers)
    # loaded over the empty image (a restart), the same snapshot reports everything this broker holds
    fresh = snapshot_delta(MetadataImage.EMPTY, newer).local_changes(other)
    assert ("same", 0) in fresh.leaders and not fresh.deletes


def test_records_between_equal_images_is_empty_and_snapshots_never_go_back():
    image = busy_harness().image
    assert records_between(image, image) == []
    assert snapshot_delta(image, image).apply() == image
    with pytest.raises(AssertionError):
        snapshot_delta(image, MetadataImage.EMPTY)


def test_topic_name_reused_with_a_new_id_replaces_the_old_topic():
    h = Harness()
    h.start_brokers(1)
    h.commit(h.controller.create_topics([NewTopic("t", 1, 1)]))
    before = h.image
    h.commit(h.controller.delete_topics(["t"]))
    h.commit(h.controller.create_topics([NewTopic("t", 2, 1)]))
    after = h.image
    assert before.topics.get_topic("t").topic_id != after.topics.get_topic("t").topic_id
    delta = snapshot_delta(before, after)
    assert delta.apply() == after
    assert {(name, p) for name, _, p in delta.local_changes(0).deletes} == {("t", 0)}
    assert set(delta.local_changes(0).leaders) == {("t", 0), ("t", 1)}
