"""Record framing: ApiMessageAndVersion bytes, round trips of every record type, bad frames."""

from __future__ import annotations

import uuid

import pytest

from cluster.core.errors import ProtocolDecodeError
from cluster.metadata.records import decode_record, default_version, encode_record
from cluster.wire.messages import fetch_request
from cluster.wire.metadata_records import RECORDS, partition_change_record, topic_record


@pytest.mark.parametrize("api_key", sorted(RECORDS))
def test_every_record_type_round_trips_at_every_version(api_key):
    module = RECORDS[api_key]
    cls = getattr(module, module.SCHEMA[0])
    lo, hi = module.VALID_VERSIONS
    for version in range(lo, hi + 1):
        raw = encode_record(cls(), version)
        back, got_version = decode_record(raw)
        assert got_version == version and back == cls()
        assert raw[:2] == bytes([1, api_key])  # frame version 1, then the api key (all < 128)
        assert raw[2] == version


def test_topic_record_bytes_are_kafkas_layout():
    topic_id = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")
    raw = encode_record(topic_record.TopicRecord(name="ab", topic_id=topic_id), 0)
    # frame v1, api key 2, version 0, compact string "ab", 16-byte uuid, empty tagged fields
    assert raw == b"\x01\x02\x00" + b"\x03ab" + topic_id.bytes + b"\x00"


def test_partition_change_record_keeps_tagged_fields_and_defaults():
    record = partition_change_record.PartitionChangeRecord(partition_id=4, topic_id=uuid.uuid4(), isr=[1, 2], leader=2)
    back, version = decode_record(encode_record(record))
    assert version == default_version(record) == 2
    assert back.isr == [1, 2] and back.leader == 2 and back.replicas is None
    untouched, _ = decode_record(encode_record(partition_change_record.PartitionChangeRecord(partition_id=1)))
    assert untouched.leader == -2 and untouched.isr is None  # -2: leader unchanged


def test_frame_version_zero_is_accepted():
    raw = b"\x00" + encode_record(topic_record.TopicRecord(name="x"), 0)[1:]
    assert decode_record(raw)[0].name == "x"


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x01", b"\x02\x02\x00\x02x" + bytes(17), b"\x01\x7f\x00", b"\x01\x02\x05\x02x" + bytes(17)],
    ids=["empty", "truncated-frame", "frame-version-2", "unknown-api-key", "unknown-version"],
)
def test_bad_frames_raise(raw):
    with pytest.raises(ProtocolDecodeError):
        decode_record(raw)


def test_trailing_bytes_and_truncated_bodies_raise():
    raw = encode_record(topic_record.TopicRecord(name="abc", topic_id=uuid.uuid4()))
    with pytest.raises(ProtocolDecodeError, match="bytes after"):
        decode_record(raw + b"\x00")
    with pytest.raises(ProtocolDecodeError):
        decode_record(raw[:-5])


def test_non_record_objects_are_refused():
    with pytest.raises(ValueError, match="not a metadata record"):
        encode_record(fetch_request.FetchRequest())
    with pytest.raises(ValueError):
        encode_record(object())
