"""__consumer_offsets keys and values: Kafka's byte layout, every value version Kafka wrote."""

from __future__ import annotations

import struct

import pytest

from cluster.core.errors import CorruptRecordError
from cluster.groups import records


def test_offset_commit_key_layout_is_kafkas():
    key = records.encode_offset_commit_key("g", "t", 3)
    # int16 version 1, string "g", string "t", int32 partition
    assert key == b"\x00\x01" + b"\x00\x01g" + b"\x00\x01t" + b"\x00\x00\x00\x03"
    assert records.decode_key(key) == records.OffsetCommitKey("g", "t", 3)


def test_group_metadata_key_layout_is_kafkas():
    key = records.encode_group_metadata_key("grp")
    assert key == b"\x00\x02" + b"\x00\x03grp"
    assert records.decode_key(key) == records.GroupMetadataKey("grp")


def test_key_version_zero_is_an_offset_key_and_unknown_versions_are_skipped():
    key = b"\x00\x00" + b"\x00\x01g" + b"\x00\x01t" + struct.pack(">i", 9)
    assert records.decode_key(key) == records.OffsetCommitKey("g", "t", 9)
    assert records.decode_key(b"\x00\x03\x00\x01g") is None  # a KIP-848 record type


def test_offset_commit_value_v3_layout():
    value = records.OffsetCommitValue(42, 5, "meta", 1000)
    raw = records.encode_offset_commit_value(value)
    assert raw == (b"\x00\x03" + struct.pack(">q", 42) + struct.pack(">i", 5) + b"\x00\x04meta"
                   + struct.pack(">q", 1000))
    assert records.decode_offset_commit_value(raw) == value


def test_offset_commit_value_with_expiry_is_written_as_v1():
    value = records.OffsetCommitValue(7, -1, "", 1000, 5000)
    raw = records.encode_offset_commit_value(value)
    assert raw[:2] == b"\x00\x01"
    assert records.decode_offset_commit_value(raw) == value


def test_offset_commit_value_v0_v2_and_flexible_v4_are_read():
    v0 = b"\x00\x00" + struct.pack(">q", 1) + b"\x00\x00" + struct.pack(">q", 2)
    assert records.decode_offset_commit_value(v0) == records.OffsetCommitValue(1, -1, "", 2)
    v2 = b"\x00\x02" + struct.pack(">q", 3) + b"\x00\x01m" + struct.pack(">q", 4)
    assert records.decode_offset_commit_value(v2) == records.OffsetCommitValue(3, -1, "m", 4)
    # v4: offset, leaderEpoch, compact string (len+1), commitTimestamp, tagged fields (one unknown tag)
    v4 = (b"\x00\x04" + struct.pack(">q", 9) + struct.pack(">i", 2) + b"\x03ab" + struct.pack(">q", 11)
          + b"\x01" + b"\x05" + b"\x02xy")
    assert records.decode_offset_commit_value(v4) == records.OffsetCommitValue(9, 2, "ab", 11)


def test_group_metadata_value_round_trip_v3():
    member = records.MemberMetadata("m-1", "inst", "client", "/10.0.0.1", 30000, 10000, b"sub", b"asg")
    value = records.GroupMetadataValue("consumer", 4, "range", "m-1", 12345, (member,))
    raw = records.encode_group_metadata_value(value)
    assert raw[:2] == b"\x00\x03"
    assert records.decode_group_metadata_value(raw) == value


def test_group_metadata_value_empty_group_has_null_protocol_and_leader():
    value = records.GroupMetadataValue("consumer", 2, None, None, 99, ())
    raw = records.encode_group_metadata_value(value)
    assert records.decode_group_metadata_value(raw) == value


def test_group_metadata_value_v0_uses_session_timeout_for_rebalance():
    raw = (b"\x00\x00" + b"\x00\x08consumer" + struct.pack(">i", 1) + b"\x00\x05range" + b"\x00\x01m"
           + struct.pack(">i", 1) + b"\x00\x01m" + b"\x00\x01c" + b"\x00\x01h" + struct.pack(">i", 6000)
           + struct.pack(">i", 1) + b"s" + struct.pack(">i", 0))
    decoded = records.decode_group_metadata_value(raw)
    assert decoded.current_state_timestamp_ms == -1
    assert decoded.members[0].rebalance_timeout_ms == 6000
    assert decoded.members[0].group_instance_id is None
    assert decoded.members[0].subscription == b"s" and decoded.members[0].assignment == b""


@pytest.mark.parametrize("raw", [b"", b"\x00", b"\x00\x09" + b"\x00" * 20, b"\x00\x03\x00"])
def test_bad_values_raise_corrupt_record(raw):
    with pytest.raises(CorruptRecordError):
        records.decode_offset_commit_value(raw)
    with pytest.raises(CorruptRecordError):
        records.decode_group_metadata_value(raw)
