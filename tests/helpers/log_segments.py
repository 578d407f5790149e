"""Read RecordBatch v2 headers straight from a partition's segment files.

The broker stores batches exactly as they arrived on the wire (../shared/DESIGN.md, fixed decision 5), so the segment
files tell what a client really sent: which compression codec it used (a client may silently fall
back to none) and whether its batches carry a producer id (idempotence really negotiated).  Tests use
this to prove that a compression or idempotence case tested what it claims to test.  Independent of
`cluster` on purpose: it is a second, minimal reading of Kafka's on-disk format.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

CODEC_NAMES = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}

# base_offset int64, batch_length int32, partition_leader_epoch int32, magic int8, crc uint32,
# attributes int16, last_offset_delta int32, base_timestamp int64, max_timestamp int64,
# producer_id int64, producer_epoch int16, base_sequence int32, records_count int32
_HEADER = struct.Struct(">qiibIhiqqqhii")
_LOG_OVERHEAD = 12  # base_offset + batch_length precede the part that batch_length counts


@dataclass(frozen=True)
class BatchHeader:
    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def codec(self) -> str:
        return CODEC_NAMES.get(self.attributes & 0x7, f"unknown({self.attributes & 0x7})")

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & 0x20)


def read_batch_headers(partition_dir: Path) -> list[BatchHeader]:
    """Headers of every complete batch in the `*.log` segments of one partition directory, in order."""
    segments = sorted(Path(partition_dir).glob("*.log"), key=lambda p: int(p.stem))
    headers: list[BatchHeader] = []
    for segment in segments:
        data = segment.read_bytes()
        position = 0
        while position + _HEADER.size <= len(data):
            fields = _HEADER.unpack_from(data, position)
            (base_offset, batch_length, leader_epoch, magic, _crc, attributes, last_offset_delta,
             base_timestamp, max_timestamp, producer_id, producer_epoch, base_sequence, records_count) = fields
            if batch_length <= 0 or position + _LOG_OVERHEAD + batch_length > len(data):
                break  # preallocated zeros or a torn tail: not a batch
            headers.append(BatchHeader(base_offset, batch_length, leader_epoch, magic, attributes,
                                       last_offset_delta, base_timestamp, max_timestamp, producer_id,
                                       producer_epoch, base_sequence, records_count))
            position += _LOG_OVERHEAD + batch_length
    return headers


def codecs_on_disk(partition_dir: Path) -> set[str]:
    return {header.codec for header in read_batch_headers(partition_dir) if not header.is_control}
