"""Frames KRaft metadata records the way Kafka writes them into the ``__cluster_metadata`` log.

Kafka stores every metadata record as an ``ApiMessageAndVersion`` (``MetadataRecordSerde``): an
unsigned-varint frame version (0 or 1; both have the same layout, 1 is current), the record's
``apiKey`` from its JSON schema, the record version, then the record body in the flexible encoding
(every metadata schema is flexible from version 0).  The codecs themselves are generated from the
schemas into ``cluster/wire/metadata_records``; this module only adds the frame, so a record written
here is byte-for-byte what a Kafka controller would write.

Which version do we write?  ``default_version`` picks the highest version the schema defines: the
quorum is homogeneous (every node runs this code), and newer versions only add tagged fields.
"""

from __future__ import annotations

from cluster.core.errors import ProtocolDecodeError, invariant
from cluster.wire.metadata_records import API_KEY_BY_NAME, RECORDS
from cluster.wire.primitives import read_uvarint, write_uvarint

__all__ = ["FRAME_VERSION", "codec_for", "decode_batch", "decode_record", "default_version", "encode_batch",
           "encode_record", "record_name"]

FRAME_VERSION = 1  # MetadataRecordSerde.DEFAULT_FRAME_VERSION
_FRAME_VERSIONS = (0, 1)


def record_name(record: object) -> str:
    """The schema name of a generated record object, e.g. ``"TopicRecord"``."""
    return type(record).__name__


def codec_for(record: object):
    """The generated codec module of a record object; raises ValueError for a non-record."""
    api_key = API_KEY_BY_NAME.get(record_name(record))
    if api_key is None:
        raise ValueError(f"{record_name(record)} is not a metadata record")
    module = RECORDS[api_key]
    # Two different classes can share a name only if someone passes a message struct here.
    if getattr(module, record_name(record)) is not type(record):
        raise ValueError(f"{record_name(record)} is not the generated metadata record class")
    return module


def default_version(record: object) -> int:
    """The highest version of the record's schema (what this cluster writes)."""
    return codec_for(record).VALID_VERSIONS[1]


def encode_record(record: object, version: int | None = None) -> bytes:
    """Encodes ``record`` as an ApiMessageAndVersion frame (frame version 1)."""
    module = codec_for(record)
    if version is None:
        version = module.VALID_VERSIONS[1]
    out = bytearray(write_uvarint(FRAME_VERSION) + write_uvarint(module.API_KEY) + write_uvarint(version))
    module.encode_into(out, record, version)
    return bytes(out)


def decode_record(data: bytes | bytearray | memoryview) -> tuple[object, int]:
    """Decodes one ApiMessageAndVersion frame that fills ``data``; returns (record, version).

    Raises ProtocolDecodeError for an unknown frame version or api key, a truncated body or
    trailing bytes: a metadata log entry that does not parse is corruption, never skipped.
    """
    try:
        frame_version, pos = read_uvarint(data, 0)
        api_key, pos = read_uvarint(data, pos)
        version, pos = read_uvarint(data, pos)
    except (IndexError, ValueError, ProtocolDecodeError) as exc:
        raise ProtocolDecodeError(f"truncated metadata record frame: {exc}") from None
    if frame_version not in _FRAME_VERSIONS:
        raise ProtocolDecodeError(f"unknown metadata record frame version {frame_version}")
    module = RECORDS.get(api_key)
    if module is None:
        raise ProtocolDecodeError(f"unknown metadata record api key {api_key}")
    record, end = module.decode(data, pos, version)
    if end != len(data):
        raise ProtocolDecodeError(f"{record_name(record)}: {len(data) - end} bytes after the record body")
    invariant(end <= len(data), "decoder read past the end of the frame")
    return record, version


# == batches: the payload of one metadata Raft entry ==================================================================
def encode_batch(records) -> bytes:
    """The records of one controller decision as one Raft entry: each frame prefixed by its uvarint length."""
    out = bytearray()
    for record in records:
        frame = encode_record(record)
        out += write_uvarint(len(frame))
        out += frame
    return bytes(out)


def decode_batch(payload: bytes) -> list:
    """The records of one Raft entry written by ``encode_batch``."""
    records, pos = [], 0
    while pos < len(payload):
        size, pos = read_uvarint(payload, pos)
        record, _version = decode_record(memoryview(payload)[pos:pos + size])
        records.append(record)
        pos += size
    return records
