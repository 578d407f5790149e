"""RecordBatch v2 (magic 2): the unit clients produce, the log stores and fetch returns.

Kafka's hot path treats a batch as opaque bytes behind a fixed 61-byte header (../shared/DESIGN.md, fixed decision 6):
Produce checks the header and the CRC-32C, the leader stamps ``base_offset`` and
``partition_leader_epoch`` in place (both lie outside the CRC), and the bytes go to disk and back
out to consumers unchanged.  So this module has two halves:

* a fast half that only touches the header: ``parse_batch_header``, ``validate_batch``,
  ``iter_batch_headers``, ``stamp_batch``, ``set_log_append_time`` (one precompiled ``struct``,
  the CRC via the ``crc32c`` C extension);
* a slow half that decodes and builds records (``decode_records``, ``build_batch``,
  ``find_first_record_at_or_after``, control-record helpers), used only where semantics need the
  records: timestamp lookups, the group coordinator's topic, transaction markers, tests and our CLI.

Layout (kafka-protocol.md §4.4, DefaultRecordBatch.java)::

    0 baseOffset int64 | 8 batchLength int32 | 12 partitionLeaderEpoch int32 | 16 magic int8
    17 crc uint32 | 21 attributes int16 | 23 lastOffsetDelta int32 | 27 baseTimestamp int64
    35 maxTimestamp int64 | 43 producerId int64 | 51 producerEpoch int16 | 53 baseSequence int32
    57 recordsCount int32 | 61 records...

The CRC-32C covers bytes 21..end.  Pure module: no os, no time.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from crc32c import crc32c

from cluster.core.errors import CorruptRecordError, ErrorCode, KafkaError, ProtocolDecodeError
from cluster.wire import compression as _codecs
from cluster.wire.primitives import read_varint, read_varlong, write_varint, write_varlong

__all__ = [
    "BATCH_HEADER_SIZE",
    "BATCH_LENGTH_OFFSET",
    "LOG_OVERHEAD",
    "MIN_BATCH_LENGTH",
    "MAGIC_V2",
    "CRC_OFFSET",
    "ATTRIBUTES_OFFSET",
    "COMPRESSION_CODEC_MASK",
    "TIMESTAMP_TYPE_MASK",
    "TRANSACTIONAL_MASK",
    "CONTROL_MASK",
    "DELETE_HORIZON_MASK",
    "CREATE_TIME",
    "LOG_APPEND_TIME",
    "NO_PRODUCER_ID",
    "NO_PRODUCER_EPOCH",
    "NO_SEQUENCE",
    "NO_PARTITION_LEADER_EPOCH",
    "NO_TIMESTAMP",
    "ControlRecordType",
    "BatchHeader",
    "Record",
    "parse_batch_header",
    "validate_batch",
    "batch_crc_is_valid",
    "iter_batch_headers",
    "stamp_batch",
    "set_log_append_time",
    "decode_records",
    "build_batch",
    "build_control_batch",
    "control_record_type",
    "end_transaction_marker",
    "find_first_record_at_or_after",
    "increment_sequence",
]

BATCH_HEADER_SIZE = 61
# baseOffset + batchLength: the bytes not counted by batchLength (Records.LOG_OVERHEAD).
LOG_OVERHEAD = 12
BATCH_LENGTH_OFFSET = 8
PARTITION_LEADER_EPOCH_OFFSET = 12
MAGIC_OFFSET = 16
CRC_OFFSET = 17
ATTRIBUTES_OFFSET = 21
MAX_TIMESTAMP_OFFSET = 35
MAGIC_V2 = 2
# The smallest legal batchLength: a header with zero records.
MIN_BATCH_LENGTH = BATCH_HEADER_SIZE - LOG_OVERHEAD

COMPRESSION_CODEC_MASK = 0x07
TIMESTAMP_TYPE_MASK = 0x08
TRANSACTIONAL_MASK = 0x10
CONTROL_MASK = 0x20
DELETE_HORIZON_MASK = 0x40

CREATE_TIME = 0
LOG_APPEND_TIME = 1

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
NO_SEQUENCE = -1
NO_PARTITION_LEADER_EPOCH = -1
NO_TIMESTAMP = -1

_INT32_MAX = 0x7FFFFFFF
_MAX_CODEC = _codecs.ZSTD

_HEADER = struct.Struct(">qiibIhiqqqhii")
assert _HEADER.size == BATCH_HEADER_SIZE
_STAMP_OFFSET = struct.Struct(">q")
_INT32 = struct.Struct(">i")
_INT16 = struct.Struct(">h")
_UINT32 = struct.Struct(">I")
_INT64 = struct.Struct(">q")
_CONTROL_KEY = struct.Struct(">hh")
_END_TXN_VALUE = struct.Struct(">hi")


class ControlRecordType:
    """Control record key types (ControlRecordType.java); only ABORT/COMMIT appear in data topics."""

    ABORT = 0
    COMMIT = 1
    LEADER_CHANGE = 2
    SNAPSHOT_HEADER = 3
    SNAPSHOT_FOOTER = 4
    KRAFT_VERSION = 5
    KRAFT_VOTERS = 6


def increment_sequence(sequence: int, increment: int) -> int:
    """Producer sequences wrap from INT32_MAX to 0 (DefaultRecordBatch.incrementSequence)."""
    if sequence > _INT32_MAX - increment:
        return increment - (_INT32_MAX - sequence) - 1
    return sequence + increment


class BatchHeader(NamedTuple):
    """The 61-byte RecordBatch v2 header, decoded with a single ``struct.unpack_from``."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def compression_type(self) -> int:
        return self.attributes & COMPRESSION_CODEC_MASK

    @property
    def timestamp_type(self) -> int:
        """0 = CreateTime, 1 = LogAppendTime."""
        return LOG_APPEND_TIME if self.attributes & TIMESTAMP_TYPE_MASK else CREATE_TIME

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_MASK)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_MASK)

    @property
    def has_producer_id(self) -> bool:
        return self.producer_id >= 0

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def size_in_bytes(self) -> int:
        return self.batch_length + LOG_OVERHEAD

    @property
    def last_sequence(self) -> int:
        if self.base_sequence == NO_SEQUENCE:
            return NO_SEQUENCE
        return increment_sequence(self.base_sequence, self.last_offset_delta)


def parse_batch_header(buf, pos: int = 0) -> BatchHeader:
    """Decodes the header at ``pos``; checks only what the header alone can tell.

    Raises CorruptRecordError when fewer than 61 bytes remain, the magic is not 2, or batchLength
    is smaller than a header.  It does not check that the whole batch is present (callers that
    read only the header from disk cannot know) nor the CRC (see ``validate_batch``).
    """
    if len(buf) - pos < BATCH_HEADER_SIZE:
        raise CorruptRecordError(f"record batch header truncated: {len(buf) - pos} of 61 bytes at {pos}")
    header = BatchHeader._make(_HEADER.unpack_from(buf, pos))
    if header.magic != MAGIC_V2:
        raise CorruptRecordError(f"unsupported record batch magic {header.magic} at {pos}")
    if header.batch_length < MIN_BATCH_LENGTH:
        raise CorruptRecordError(
            f"record batch length {header.batch_length} below {MIN_BATCH_LENGTH} at {pos}"
        )
    return header


def batch_crc_is_valid(buf, pos: int, header: BatchHeader) -> bool:
    """CRC-32C of attributes..end of the batch at ``pos`` (which must be entirely in ``buf``)."""
    end = pos + header.batch_length + LOG_OVERHEAD
    return crc32c(memoryview(buf)[pos + ATTRIBUTES_OFFSET : end]) == header.crc


def validate_batch(buf) -> BatchHeader:
    """Validates the record set of ONE partition in a Produce request (v3+) without decoding records.

    Kafka requires exactly one batch per partition (ProduceRequest.validateRecords).  Errors:

    * ``KafkaError(INVALID_RECORD)``: empty record set, bytes after the one batch (a second batch
      or garbage), records_count <= 0, or lastOffsetDelta != records_count - 1 (Kafka's
      LogValidator rejects client batches with no records or an inconsistent offset range);
    * ``CorruptRecordError`` (CORRUPT_MESSAGE): fewer bytes than the header or batchLength
      declares, magic != 2, a bad batchLength, or a CRC-32C mismatch;
    * ``KafkaError(UNSUPPORTED_COMPRESSION_TYPE)``: codec id above 4.

    Checks control batches the same way; refusing control batches from clients is the caller's job.
    """
    view = memoryview(buf)
    size = len(view)
    if size == 0:
        raise KafkaError(ErrorCode.INVALID_RECORD, "produce request contains no record batch")
    header = parse_batch_header(view, 0)
    batch_size = header.batch_length + LOG_OVERHEAD
    if batch_size > size:
        raise CorruptRecordError(f"record batch declares {batch_size} bytes but only {size} were sent")
    if batch_size < size:
        raise KafkaError(
            ErrorCode.INVALID_RECORD,
            f"produce record set must hold exactly one batch; {size - batch_size} bytes follow it",
        )
    if crc32c(view[ATTRIBUTES_OFFSET:]) != header.crc:
        raise CorruptRecordError("record batch CRC-32C mismatch")
    if header.compression_type > _MAX_CODEC:
        raise KafkaError(
            ErrorCode.UNSUPPORTED_COMPRESSION_TYPE, f"unknown compression codec {header.compression_type}"
        )
    if header.records_count <= 0:
        raise KafkaError(ErrorCode.INVALID_RECORD, f"record batch has records_count {header.records_count}")
    if header.last_offset_delta != header.records_count - 1:
        raise KafkaError(
            ErrorCode.INVALID_RECORD,
            f"lastOffsetDelta {header.last_offset_delta} inconsistent with {header.records_count} records",
        )
    return header


def iter_batch_headers(buf, pos: int = 0) -> Iterator[tuple[int, BatchHeader]]:
    """Yields ``(position, header)`` for each complete batch in a concatenation of batches.

    Stops cleanly at a truncated tail (fetch responses and torn log files end that way) and
    raises CorruptRecordError on a header that cannot be a batch.  CRCs are not checked.
    """
    end = len(buf)
    unpack = _HEADER.unpack_from
    make = BatchHeader._make
    while end - pos >= BATCH_HEADER_SIZE:
        header = make(unpack(buf, pos))
        if header.magic != MAGIC_V2 or header.batch_length < MIN_BATCH_LENGTH:
            parse_batch_header(buf, pos)  # raises with the precise reason
        next_pos = pos + header.batch_length + LOG_OVERHEAD
        if next_pos > end:
            return
        yield pos, header
        pos = next_pos


def stamp_batch(batch: bytearray, base_offset: int, partition_leader_epoch: int) -> None:
    """Writes base_offset and partition_leader_epoch in place; both lie outside the CRC."""
    _STAMP_OFFSET.pack_into(batch, 0, base_offset)
    _INT32.pack_into(batch, PARTITION_LEADER_EPOCH_OFFSET, partition_leader_epoch)


def set_log_append_time(batch: bytearray, timestamp_ms: int) -> None:
    """Marks the batch LogAppendTime with ``timestamp_ms`` and recomputes the CRC.

    As Kafka's DefaultRecordBatch.setMaxTimestamp does: only the timestamp-type bit and
    maxTimestamp change; readers then report maxTimestamp as every record's timestamp.
    """
    (attributes,) = _INT16.unpack_from(batch, ATTRIBUTES_OFFSET)
    _INT16.pack_into(batch, ATTRIBUTES_OFFSET, attributes | TIMESTAMP_TYPE_MASK)
    _INT64.pack_into(batch, MAX_TIMESTAMP_OFFSET, timestamp_ms)
    _UINT32.pack_into(batch, CRC_OFFSET, crc32c(memoryview(batch)[ATTRIBUTES_OFFSET:]))


@dataclass(slots=True)
class Record:
    """One decoded record.  ``headers`` keys are str (invalid UTF-8 kept via surrogateescape)."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)


def _records_section(batch, header: BatchHeader, max_output_bytes: int):
    """The records bytes of a batch, decompressed when needed."""
    view = memoryview(batch)[BATCH_HEADER_SIZE : header.batch_length + LOG_OVERHEAD]
    if header.compression_type == _codecs.NONE:
        return view
    return _codecs.decompress(header.compression_type, view, max_output_bytes)


def _whole_batch_header(batch) -> BatchHeader:
    header = parse_batch_header(batch, 0)
    if header.batch_length + LOG_OVERHEAD > len(batch):
        raise CorruptRecordError(
            f"record batch declares {header.batch_length + LOG_OVERHEAD} bytes but only {len(batch)} present"
        )
    if header.records_count < 0:
        raise CorruptRecordError(f"record batch has negative records_count {header.records_count}")
    return header


def _read_bytes(buf, pos: int, end: int, what: str) -> tuple[bytes | None, int]:
    length, pos = read_varint(buf, pos)
    if length < 0:
        return None, pos
    if pos + length > end:
        raise CorruptRecordError(f"record {what} length {length} overruns the record")
    return bytes(buf[pos : pos + length]), pos + length


def decode_records(batch, *, max_output_bytes: int = _codecs.DEFAULT_MAX_OUTPUT_BYTES) -> list[Record]:
    """Decodes every record of one batch (control batches too: their key/value are the raw
    control key and value; see ``control_record_type``).  Raises CorruptRecordError on any
    malformation, including a batch that holds fewer records than it declares."""
    header = _whole_batch_header(batch)
    section = _records_section(batch, header, max_output_bytes)
    log_append_time = header.max_timestamp if header.timestamp_type == LOG_APPEND_TIME else None
    base_offset = header.base_offset
    base_timestamp = header.base_timestamp
    end = len(section)
    pos = 0
    records = []
    try:
        for _ in range(header.records_count):
            length, pos = read_varint(section, pos)
            record_end = pos + length
            if length < 0 or record_end > end:
                raise CorruptRecordError(f"record length {length} overruns the batch")
            pos += 1  # record attributes: unused in v2
            timestamp_delta, pos = read_varlong(section, pos)
            offset_delta, pos = read_varint(section, pos)
            key, pos = _read_bytes(section, pos, record_end, "key")
            value, pos = _read_bytes(section, pos, record_end, "value")
            header_count, pos = read_varint(section, pos)
            if header_count < 0:
                raise CorruptRecordError(f"record header count {header_count} is negative")
            headers = []
            for _ in range(header_count):
                raw_key, pos = _read_bytes(section, pos, record_end, "header key")
                if raw_key is None:
                    raise CorruptRecordError("record header key is null")
                header_value, pos = _read_bytes(section, pos, record_end, "header value")
                headers.append((raw_key.decode("utf-8", "surrogateescape"), header_value))
            if pos != record_end:
                raise CorruptRecordError(
                    f"record declares {length} bytes but its fields use {length + pos - record_end}"
                )
            timestamp = log_append_time if log_append_time is not None else base_timestamp + timestamp_delta
            records.append(Record(base_offset + offset_delta, timestamp, key, value, headers))
    except ProtocolDecodeError as exc:
        raise CorruptRecordError(f"malformed record: {exc}") from None
    if pos != end:
        raise CorruptRecordError(f"{end - pos} bytes follow the last of {header.records_count} records")
    return records


def _iter_record_offsets_and_timestamps(section, header: BatchHeader) -> Iterator[tuple[int, int]]:
    """Offset and timestamp of each record, skipping keys, values and headers by length."""
    base_offset = header.base_offset
    base_timestamp = header.base_timestamp
    end = len(section)
    pos = 0
    try:
        for _ in range(header.records_count):
            length, pos = read_varint(section, pos)
            record_end = pos + length
            if length < 0 or record_end > end:
                raise CorruptRecordError(f"record length {length} overruns the batch")
            timestamp_delta, field_pos = read_varlong(section, pos + 1)
            offset_delta, _ = read_varint(section, field_pos)
            yield base_offset + offset_delta, base_timestamp + timestamp_delta
            pos = record_end
    except ProtocolDecodeError as exc:
        raise CorruptRecordError(f"malformed record: {exc}") from None


def find_first_record_at_or_after(
    batch, target_timestamp_ms: int, *, min_offset: int = 0
) -> tuple[int, int] | None:
    """(offset, timestamp) of the first record with timestamp >= target (and offset >= min_offset).

    Used by ListOffsets by time.  The header's maxTimestamp rules most batches out without
    decompressing anything.  For LogAppendTime batches every record carries maxTimestamp.
    """
    header = _whole_batch_header(batch)
    if header.max_timestamp < target_timestamp_ms or header.last_offset < min_offset:
        return None
    section = _records_section(batch, header, _codecs.DEFAULT_MAX_OUTPUT_BYTES)
    log_append_time = header.timestamp_type == LOG_APPEND_TIME
    for offset, timestamp in _iter_record_offsets_and_timestamps(section, header):
        if log_append_time:
            timestamp = header.max_timestamp
        if timestamp >= target_timestamp_ms and offset >= min_offset:
            return offset, timestamp
    return None


def _record_fields(record) -> tuple[bytes | None, bytes | None, Iterable, int]:
    if isinstance(record, tuple):
        key, value, headers, timestamp_ms = record
    else:
        key, value, headers, timestamp_ms = record.key, record.value, record.headers, record.timestamp
    return key, value, headers or (), timestamp_ms


def _encode_nullable(data: bytes | None, out: list) -> None:
    if data is None:
        out.append(b"\x01")  # zig-zag -1
    else:
        out.append(write_varint(len(data)))
        out.append(data)


def _encode_record(offset_delta: int, timestamp_delta: int, key, value, headers) -> bytes:
    body = [b"\x00", write_varlong(timestamp_delta), write_varint(offset_delta)]
    _encode_nullable(key, body)
    _encode_nullable(value, body)
    body.append(write_varint(len(headers)))
    for header_key, header_value in headers:
        raw_key = header_key.encode("utf-8", "surrogateescape") if isinstance(header_key, str) else header_key
        _encode_nullable(raw_key, body)
        _encode_nullable(header_value, body)
    encoded = b"".join(body)
    return write_varint(len(encoded)) + encoded


def build_batch(
    records,
    *,
    base_offset: int = 0,
    compression: int = 0,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = NO_PRODUCER_EPOCH,
    base_sequence: int = NO_SEQUENCE,
    is_transactional: bool = False,
    is_control: bool = False,
    partition_leader_epoch: int = NO_PARTITION_LEADER_EPOCH,
    timestamp_type: int = CREATE_TIME,
) -> bytes:
    """Builds one RecordBatch v2 with a correct CRC.

    ``records`` holds ``(key, value, headers, timestamp_ms)`` tuples or Record-like objects
    (attributes key, value, headers, timestamp).  Offset deltas are 0..n-1 (a Record's own
    ``offset`` is ignored).  baseTimestamp is the first record's timestamp and maxTimestamp the
    largest, as Kafka's MemoryRecordsBuilder does; with ``timestamp_type=LOG_APPEND_TIME`` the
    caller should pass the append time as every record's timestamp.
    """
    fields = [_record_fields(record) for record in records]
    if fields:
        base_timestamp = fields[0][3]
        max_timestamp = max(f[3] for f in fields)
    else:
        base_timestamp = max_timestamp = NO_TIMESTAMP
    encoded = b"".join(
        _encode_record(delta, timestamp - base_timestamp, key, value, list(headers))
        for delta, (key, value, headers, timestamp) in enumerate(fields)
    )
    codec = compression
    if codec:
        encoded = _codecs.compress(codec, encoded)
    attributes = codec & COMPRESSION_CODEC_MASK
    if timestamp_type == LOG_APPEND_TIME:
        attributes |= TIMESTAMP_TYPE_MASK
    if is_transactional:
        attributes |= TRANSACTIONAL_MASK
    if is_control:
        attributes |= CONTROL_MASK
    batch = bytearray(BATCH_HEADER_SIZE)
    _HEADER.pack_into(
        batch,
        0,
        base_offset,
        BATCH_HEADER_SIZE - LOG_OVERHEAD + len(encoded),
        partition_leader_epoch,
        MAGIC_V2,
        0,
        attributes,
        max(len(fields) - 1, 0),
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        len(fields),
    )
    batch += encoded
    _UINT32.pack_into(batch, CRC_OFFSET, crc32c(memoryview(batch)[ATTRIBUTES_OFFSET:]))
    return bytes(batch)


def end_transaction_marker(control_type: int, coordinator_epoch: int) -> tuple[bytes, bytes]:
    """(key, value) of an ABORT/COMMIT control record (EndTransactionMarker.java, version 0)."""
    return _CONTROL_KEY.pack(0, control_type), _END_TXN_VALUE.pack(0, coordinator_epoch)


def build_control_batch(
    control_type: int,
    *,
    producer_id: int,
    producer_epoch: int,
    coordinator_epoch: int,
    timestamp_ms: int,
    base_offset: int = 0,
    partition_leader_epoch: int = NO_PARTITION_LEADER_EPOCH,
) -> bytes:
    """A transaction marker batch: control + transactional bits, one record, no sequence."""
    key, value = end_transaction_marker(control_type, coordinator_epoch)
    return build_batch(
        [(key, value, (), timestamp_ms)],
        base_offset=base_offset,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=NO_SEQUENCE,
        is_transactional=True,
        is_control=True,
        partition_leader_epoch=partition_leader_epoch,
    )


def control_record_type(record: Record) -> int:
    """The type of a control record from its key (version int16, type int16)."""
    if record.key is None or len(record.key) < _CONTROL_KEY.size:
        raise CorruptRecordError("control record key shorter than 4 bytes")
    _version, control_type = _CONTROL_KEY.unpack_from(record.key, 0)
    return control_type
