"""RecordBatch v2: header codec, Produce validation, in-place stamping, record codec, interop."""

from __future__ import annotations

import struct

import aiokafka.record.default_records as aiokafka_records
import kafka.record.default_records as kafka_records
import pytest
from crc32c import crc32c

from cluster.core.errors import CorruptRecordError, ErrorCode, KafkaError
from cluster.wire.records import (
    BATCH_HEADER_SIZE,
    CREATE_TIME,
    LOG_APPEND_TIME,
    ControlRecordType,
    Record,
    build_batch,
    build_control_batch,
    control_record_type,
    decode_records,
    end_transaction_marker,
    find_first_record_at_or_after,
    increment_sequence,
    iter_batch_headers,
    parse_batch_header,
    set_log_append_time,
    stamp_batch,
    validate_batch,
)

CODECS = [0, 1, 2, 3, 4]


def simple_batch(n: int = 3, **kwargs) -> bytes:
    return build_batch([(b"k%d" % i, b"value-%d" % i, [], 1_000 + i) for i in range(n)], **kwargs)


def recrc(batch: bytearray) -> bytearray:
    struct.pack_into(">I", batch, 17, crc32c(bytes(batch[21:])))
    return batch


# -- header ------------------------------------------------------------------------------------------
def test_header_fields_and_properties() -> None:
    batch = build_batch(
        [(b"a", b"1", [], 500), (b"b", b"2", [], 900), (b"c", b"3", [], 700)],
        base_offset=40,
        compression=3,
        producer_id=77,
        producer_epoch=4,
        base_sequence=10,
        is_transactional=True,
        partition_leader_epoch=9,
    )
    header = parse_batch_header(batch)
    assert BATCH_HEADER_SIZE == 61
    assert header.base_offset == 40
    assert header.partition_leader_epoch == 9
    assert header.magic == 2
    assert header.batch_length == len(batch) - 12
    assert header.size_in_bytes == len(batch)
    assert header.last_offset_delta == 2
    assert header.last_offset == 42
    assert header.next_offset == 43
    assert header.base_timestamp == 500
    assert header.max_timestamp == 900
    assert header.producer_id == 77 and header.producer_epoch == 4
    assert header.base_sequence == 10 and header.last_sequence == 12
    assert header.records_count == 3
    assert header.compression_type == 3
    assert header.timestamp_type == CREATE_TIME
    assert header.is_transactional and not header.is_control


def test_parse_header_at_position() -> None:
    one, two = simple_batch(1), simple_batch(2, base_offset=1)
    assert parse_batch_header(one + two, len(one)).records_count == 2


def test_last_sequence_wraps_like_kafka() -> None:
    assert increment_sequence(2**31 - 1, 1) == 0
    assert increment_sequence(2**31 - 3, 5) == 2
    assert increment_sequence(5, 3) == 8
    header = parse_batch_header(simple_batch(4, producer_id=1, producer_epoch=0, base_sequence=2**31 - 2))
    assert header.last_sequence == 1
    assert parse_batch_header(simple_batch(4)).last_sequence == -1


@pytest.mark.parametrize("length", [0, 10, 60])
def test_parse_header_too_short(length: int) -> None:
    with pytest.raises(CorruptRecordError, match="truncated"):
        parse_batch_header(simple_batch()[:length])


def test_parse_header_rejects_other_magic_and_tiny_length() -> None:
    batch = bytearray(simple_batch())
    batch[16] = 1
    with pytest.raises(CorruptRecordError, match="magic 1"):
        parse_batch_header(batch)
    batch = bytearray(simple_batch())
    struct.pack_into(">i", batch, 8, 48)
    with pytest.raises(CorruptRecordError, match="below 49"):
        parse_batch_header(batch)


# -- validate_batch ----------------------------------------------------------------------------------
@pytest.mark.parametrize("codec", CODECS)
def test_validate_accepts_well_formed_batches(codec: int) -> None:
    batch = simple_batch(5, compression=codec)
    for buf in (batch, bytearray(batch), memoryview(batch)):
        assert validate_batch(buf).records_count == 5


def test_validate_rejects_empty_record_set() -> None:
    with pytest.raises(KafkaError) as err:
        validate_batch(b"")
    assert err.value.error_code == ErrorCode.INVALID_RECORD


def test_validate_rejects_second_batch_and_trailing_bytes() -> None:
    for extra in (simple_batch(1, base_offset=3), b"\x00", b"garbage!"):
        with pytest.raises(KafkaError) as err:
            validate_batch(simple_batch() + extra)
        assert err.value.error_code == ErrorCode.INVALID_RECORD


def test_validate_rejects_truncated_batch_as_corrupt() -> None:
    batch = simple_batch()
    for cut in (30, 61, len(batch) - 1):
        with pytest.raises(CorruptRecordError):
            validate_batch(batch[:cut])


def test_validate_detects_crc_mismatch_anywhere_under_the_crc() -> None:
    batch = simple_batch()
    for position in range(21, len(batch)):
        damaged = bytearray(batch)
        damaged[position] ^= 0x40
        with pytest.raises(CorruptRecordError) as err:
            validate_batch(damaged)
        assert err.value.error_code == ErrorCode.CORRUPT_MESSAGE


def test_validate_ignores_fields_outside_the_crc() -> None:
    batch = bytearray(simple_batch())
    stamp_batch(batch, 123_456, 77)
    header = validate_batch(batch)
    assert (header.base_offset, header.partition_leader_epoch) == (123_456, 77)


def test_validate_rejects_unknown_compression_with_valid_crc() -> None:
    batch = bytearray(simple_batch())
    struct.pack_into(">h", batch, 21, 6)
    with pytest.raises(KafkaError) as err:
        validate_batch(recrc(batch))
    assert err.value.error_code == ErrorCode.UNSUPPORTED_COMPRESSION_TYPE


def test_validate_rejects_inconsistent_counts() -> None:
    zero = bytearray(simple_batch(3))
    struct.pack_into(">i", zero, 57, 0)
    with pytest.raises(KafkaError) as err:
        validate_batch(recrc(zero))
    assert err.value.error_code == ErrorCode.INVALID_RECORD
    delta = bytearray(simple_batch(3))
    struct.pack_into(">i", delta, 23, 5)
    with pytest.raises(KafkaError) as err:
        validate_batch(recrc(delta))
    assert err.value.error_code == ErrorCode.INVALID_RECORD
    with pytest.raises(KafkaError) as err:  # an empty batch is not producible
        validate_batch(build_batch([]))
    assert err.value.error_code == ErrorCode.INVALID_RECORD


# -- iter_batch_headers --------------------------------------------------------------------------------
def test_iter_batch_headers_walks_concatenation_and_stops_at_torn_tail() -> None:
    batches = [simple_batch(i + 1, base_offset=10 * i) for i in range(3)]
    data = b"".join(batches)
    found = list(iter_batch_headers(data))
    assert [pos for pos, _ in found] == [0, len(batches[0]), len(batches[0]) + len(batches[1])]
    assert [h.base_offset for _, h in found] == [0, 10, 20]
    for cut in (len(data) - 1, len(data) - len(batches[2]) + 30):
        assert [h.base_offset for _, h in iter_batch_headers(data[:cut])] == [0, 10]
    assert list(iter_batch_headers(b"")) == []
    assert [h.base_offset for _, h in iter_batch_headers(data, len(batches[0]))] == [10, 20]


def test_iter_batch_headers_raises_on_garbage_header() -> None:
    data = simple_batch() + b"\x00" * 70
    with pytest.raises(CorruptRecordError):
        list(iter_batch_headers(data))


# -- in-place changes ----------------------------------------------------------------------------------
def test_stamp_batch_changes_offsets_without_breaking_the_crc() -> None:
    batch = bytearray(simple_batch(3))
    stamp_batch(batch, 1_000, 5)
    header = validate_batch(batch)
    assert header.base_offset == 1_000 and header.partition_leader_epoch == 5
    assert [r.offset for r in decode_records(batch)] == [1_000, 1_001, 1_002]


def test_set_log_append_time() -> None:
    batch = bytearray(build_batch([(b"a", b"1", [], 100), (b"b", b"2", [], 50)], compression=1))
    set_log_append_time(batch, 99_999)
    header = validate_batch(batch)  # the CRC was recomputed
    assert header.timestamp_type == LOG_APPEND_TIME
    assert header.max_timestamp == 99_999
    assert header.base_timestamp == 100  # unchanged, as in Kafka
    assert header.compression_type == 1
    assert [r.timestamp for r in decode_records(batch)] == [99_999, 99_999]


# -- records -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("codec", CODECS)
def test_build_decode_round_trip(codec: int) -> None:
    records = [
        (b"key", b"value", [("h1", b"x"), ("h2", None)], 1_000),
        (None, b"no key", [], 990),  # timestamps need not increase: negative delta
        (b"no value", None, [], 1_010),
        (b"", b"", [("\u00e9t\u00e9", b"")], 1_005),
        (b"big", bytes(range(256)) * 100, [], 1_000),
    ]
    batch = build_batch(records, base_offset=100, compression=codec)
    decoded = decode_records(batch)
    assert decoded == [
        Record(100 + i, ts, key, value, list(headers)) for i, (key, value, headers, ts) in enumerate(records)
    ]
    header = validate_batch(batch)
    assert header.base_timestamp == 1_000 and header.max_timestamp == 1_010


def test_build_accepts_record_like_objects_and_ignores_their_offsets() -> None:
    source = [Record(500, 7, b"a", b"b", [("k", b"v")]), Record(900, 8, None, None, [])]
    decoded = decode_records(build_batch(source))
    assert [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in decoded] == [
        (0, 7, b"a", b"b", [("k", b"v")]),
        (1, 8, None, None, []),
    ]


def test_empty_batch_round_trip() -> None:
    batch = build_batch([])
    header = parse_batch_header(batch)
    assert header.records_count == 0 and len(batch) == 61
    assert decode_records(batch) == []


def test_header_keys_with_invalid_utf8_survive() -> None:
    raw = bytearray(build_batch([(b"k", b"v", [("ab", b"1")], 1)]))
    position = raw.index(b"ab\x021")  # key "ab", value length 1, value "1"
    raw[position] = 0xFF
    decoded = decode_records(recrc(raw))
    assert decoded[0].headers[0][0].encode("utf-8", "surrogateescape") == b"\xffb"
    rebuilt = decode_records(build_batch(decoded))
    assert rebuilt[0].headers == decoded[0].headers


def test_control_batch() -> None:
    batch = build_control_batch(
        ControlRecordType.COMMIT, producer_id=5, producer_epoch=2, coordinator_epoch=11, timestamp_ms=1_234
    )
    header = validate_batch(batch)
    assert header.is_control and header.is_transactional
    assert header.producer_id == 5 and header.producer_epoch == 2 and header.base_sequence == -1
    (record,) = decode_records(batch)
    assert control_record_type(record) == ControlRecordType.COMMIT
    assert record.key == b"\x00\x00\x00\x01"
    assert record.value == b"\x00\x00\x00\x00\x00\x0b"
    assert end_transaction_marker(ControlRecordType.ABORT, 3) == (
        b"\x00\x00\x00\x00",
        b"\x00\x00\x00\x00\x00\x03",
    )
    with pytest.raises(CorruptRecordError):
        control_record_type(Record(0, 0, b"\x00", None, []))


def test_decode_rejects_malformed_records() -> None:
    batch = bytearray(build_batch([(b"key", b"value", [], 1)]))
    # The record length varint sits right after the header; claim a longer record.
    batch[61] = 0x7E
    with pytest.raises(CorruptRecordError):
        decode_records(batch)
    more = bytearray(build_batch([(b"key", b"value", [], 1)]))
    struct.pack_into(">i", more, 57, 2)  # declares two records, holds one
    with pytest.raises(CorruptRecordError):
        decode_records(more)
    trailing = bytearray(build_batch([(b"key", b"value", [], 1)]) + b"\x00\x00")
    struct.pack_into(">i", trailing, 8, len(trailing) - 12)
    with pytest.raises(CorruptRecordError, match="follow the last"):
        decode_records(trailing)
    with pytest.raises(CorruptRecordError):
        decode_records(build_batch([(b"k", b"v", [], 1)])[:-2])


def test_decode_bounds_decompression() -> None:
    batch = build_batch([(None, bytes(5_000_000), [], 1)], compression=4)
    assert len(batch) < 10_000
    with pytest.raises(CorruptRecordError, match="expands beyond"):
        decode_records(batch, max_output_bytes=1_000_000)


# -- timestamp search ----------------------------------------------------------------------------------
def test_find_first_record_at_or_after() -> None:
    batch = build_batch([(None, b"", [], ts) for ts in (100, 300, 200, 400)], base_offset=10, compression=2)
    assert find_first_record_at_or_after(batch, 0) == (10, 100)
    assert find_first_record_at_or_after(batch, 150) == (11, 300)
    assert find_first_record_at_or_after(batch, 300) == (11, 300)
    assert find_first_record_at_or_after(batch, 301) == (13, 400)
    assert find_first_record_at_or_after(batch, 401) is None
    assert find_first_record_at_or_after(batch, 150, min_offset=12) == (12, 200)
    assert find_first_record_at_or_after(batch, 0, min_offset=14) is None
    log_append = bytearray(batch)
    set_log_append_time(log_append, 5_000)
    assert find_first_record_at_or_after(log_append, 4_000) == (10, 5_000)


# -- interop with the clients' own batch code -------------------------------------------------------
def _client_builder(module, codec: int, producer_id: int = -1, epoch: int = -1, sequence: int = -1):
    return module.DefaultRecordBatchBuilder(2, codec, 0, producer_id, epoch, sequence, 1 << 20)


@pytest.mark.parametrize("module", [kafka_records, aiokafka_records], ids=["kafka-python", "aiokafka"])
@pytest.mark.parametrize("codec", CODECS)
def test_we_read_client_batches(module, codec: int) -> None:
    builder = _client_builder(module, codec, producer_id=42, epoch=3, sequence=7)
    # Compressible values: kafka-python stores a batch uncompressed when compression does not pay.
    builder.append(0, 1_000, b"k0", b"v0" * 200, [("h", b"x")])
    builder.append(1, 1_001, None, b"v1", [])
    builder.append(2, 999, b"k2", None, [])
    raw = bytes(builder.build())
    header = validate_batch(raw)
    assert (header.producer_id, header.producer_epoch, header.base_sequence, header.last_sequence) == (
        42,
        3,
        7,
        9,
    )
    assert header.compression_type == codec
    assert [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in decode_records(raw)] == [
        (0, 1_000, b"k0", b"v0" * 200, [("h", b"x")]),
        (1, 1_001, None, b"v1", []),
        (2, 999, b"k2", None, []),
    ]


@pytest.mark.parametrize("module", [kafka_records, aiokafka_records], ids=["kafka-python", "aiokafka"])
@pytest.mark.parametrize("codec", CODECS)
def test_clients_read_our_batches(module, codec: int) -> None:
    batch = bytearray(
        build_batch([(b"k", b"v" * 500, [("h", b"1")], 2_000), (None, None, [], 2_001)], compression=codec)
    )
    stamp_batch(batch, 300, 4)
    parsed = module.DefaultRecordBatch(bytes(batch))
    assert parsed.validate_crc()
    assert parsed.base_offset == 300
    got = [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in parsed]
    assert got == [(300, 2_000, b"k", b"v" * 500, [("h", b"1")]), (301, 2_001, None, None, [])]
