"""Turning a fetched partition's bytes into records: whole batches in, exactly the asked-for records out."""

from __future__ import annotations

import pytest

from cluster.client import decode_partition_records
from cluster.core.errors import CorruptRecordError
from cluster.wire.records import ControlRecordType, build_batch, build_control_batch


def batch(base_offset: int, values: list[bytes], **kwargs) -> bytes:
    return build_batch([(None, v, [], 1000 + i) for i, v in enumerate(values)], base_offset=base_offset, **kwargs)


def offsets(records) -> list[int]:
    return [r.offset for r in records]


def test_records_below_the_fetch_offset_are_dropped_from_the_first_batch():
    data = batch(10, [b"a", b"b", b"c"]) + batch(13, [b"d"])
    records, next_offset = decode_partition_records("t", 0, data, 11)
    assert offsets(records) == [11, 12, 13]
    assert [r.value for r in records] == [b"b", b"c", b"d"]
    assert next_offset == 14


def test_batches_entirely_below_the_fetch_offset_are_skipped():
    data = batch(0, [b"a", b"b"]) + batch(2, [b"c"])
    records, next_offset = decode_partition_records("t", 0, data, 2)
    assert offsets(records) == [2]
    assert next_offset == 3


def test_a_truncated_last_batch_is_ignored_and_not_skipped_past():
    full = batch(0, [b"a"])
    partial = batch(1, [b"b" * 100])[:40]
    records, next_offset = decode_partition_records("t", 0, full + partial, 0)
    assert offsets(records) == [0]
    assert next_offset == 1  # the truncated batch is fetched again next time


def test_nothing_complete_keeps_the_position():
    records, next_offset = decode_partition_records("t", 0, batch(5, [b"x"])[:30], 5)
    assert (records, next_offset) == ([], 5)
    assert decode_partition_records("t", 0, b"", 7) == ([], 7)


def test_control_batches_yield_no_records_but_advance_the_position():
    data = batch(0, [b"a"], producer_id=9, producer_epoch=0, base_sequence=0, is_transactional=True)
    data += build_control_batch(ControlRecordType.COMMIT, producer_id=9, producer_epoch=0,
                                coordinator_epoch=0, timestamp_ms=5, base_offset=1)
    records, next_offset = decode_partition_records("t", 0, data, 0)
    assert offsets(records) == [0]
    assert next_offset == 2


def test_read_committed_drops_aborted_transactions_until_their_marker():
    txn = dict(producer_epoch=0, base_sequence=0, is_transactional=True)
    data = batch(0, [b"aborted-1", b"aborted-2"], producer_id=7, **txn)
    data += batch(2, [b"kept"], producer_id=8, **txn)
    data += build_control_batch(ControlRecordType.ABORT, producer_id=7, producer_epoch=0,
                                coordinator_epoch=0, timestamp_ms=5, base_offset=3)
    data += batch(4, [b"plain"])
    data += batch(5, [b"later-7"], producer_id=7, **txn)  # a new transaction of producer 7
    records, next_offset = decode_partition_records("t", 0, data, 0, aborted=[(7, 0)])
    assert [r.value for r in records] == [b"kept", b"plain", b"later-7"]
    assert next_offset == 6


def test_record_fields_and_compression_survive():
    data = build_batch([(b"k", b"v", [("h", b"x")], 1234)], base_offset=3, compression=1)
    (record,), _ = decode_partition_records("topic", 4, data, 3)
    assert (record.topic, record.partition, record.offset) == ("topic", 4, 3)
    assert (record.key, record.value, record.headers, record.timestamp) == (b"k", b"v", [("h", b"x")], 1234)
    assert record.timestamp_type == 0


def test_a_corrupted_batch_fails_its_crc_check():
    data = bytearray(batch(0, [b"hello"]))
    data[-1] ^= 0xFF
    with pytest.raises(CorruptRecordError, match="CRC"):
        decode_partition_records("t", 0, bytes(data), 0)
