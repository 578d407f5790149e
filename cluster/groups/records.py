"""The keys and values the group coordinator writes to ``__consumer_offsets``, in Kafka's exact byte layout.

Kafka tools (``kafka-console-consumer --formatter OffsetsMessageFormatter``, ``kafka-consumer-groups``) and a
Kafka broker reading our data directory must understand these records, so they follow Kafka's
group-coordinator schemas (``OffsetCommitKey``/``Value``, ``GroupMetadataKey``/``Value``):

* key = int16 key version + fields: version 0 or 1 is an ``OffsetCommitKey`` (group, topic, partition),
  version 2 a ``GroupMetadataKey`` (group);
* value = int16 value version + fields, or no value at all (a tombstone deleting the key).

We write what Kafka 3.9 writes: key version 1, ``OffsetCommitValue`` v3 (v1 when the commit carries an
explicit expire timestamp, OffsetCommit v2-v4 ``retention_time_ms``) and ``GroupMetadataValue`` v3; we read
every version Kafka ever wrote (values v0-v4, v4 being the flexible encoding).  This module stays free of
``cluster.wire`` (the pure packages are independent of each other), so it carries its own small codec.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from cluster.core.errors import CorruptRecordError

OFFSET_COMMIT_KEY_VERSION = 1
GROUP_METADATA_KEY_VERSION = 2
OFFSET_COMMIT_VALUE_VERSION = 3
OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRY = 1
GROUP_METADATA_VALUE_VERSION = 3

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")


@dataclass(frozen=True)
class OffsetCommitKey:
    group: str
    topic: str
    partition: int


@dataclass(frozen=True)
class GroupMetadataKey:
    group: str


@dataclass(frozen=True)
class OffsetCommitValue:
    offset: int
    leader_epoch: int  # -1 when unknown
    metadata: str
    commit_timestamp_ms: int
    expire_timestamp_ms: int | None = None  # only OffsetCommit v2-v4 with an explicit retention time


@dataclass(frozen=True)
class MemberMetadata:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    subscription: bytes
    assignment: bytes


@dataclass(frozen=True)
class GroupMetadataValue:
    protocol_type: str
    generation: int
    protocol: str | None
    leader: str | None
    current_state_timestamp_ms: int  # -1 when unknown (values before v2)
    members: tuple[MemberMetadata, ...] = field(default_factory=tuple)


# -- writing -----------------------------------------------------------------------------------------

def _string(value: str) -> bytes:
    raw = value.encode("utf-8")
    return _I16.pack(len(raw)) + raw


def _nullable_string(value: str | None) -> bytes:
    return _I16.pack(-1) if value is None else _string(value)


def _bytes(value: bytes) -> bytes:
    return _I32.pack(len(value)) + value


def encode_offset_commit_key(group: str, topic: str, partition: int) -> bytes:
    return _I16.pack(OFFSET_COMMIT_KEY_VERSION) + _string(group) + _string(topic) + _I32.pack(partition)


def encode_group_metadata_key(group: str) -> bytes:
    return _I16.pack(GROUP_METADATA_KEY_VERSION) + _string(group)


def encode_offset_commit_value(value: OffsetCommitValue) -> bytes:
    if value.expire_timestamp_ms is not None:
        # v1 is the only version with an expire timestamp (what Kafka writes for a commit with retention).
        return (_I16.pack(OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRY) + _I64.pack(value.offset)
                + _string(value.metadata) + _I64.pack(value.commit_timestamp_ms)
                + _I64.pack(value.expire_timestamp_ms))
    return (_I16.pack(OFFSET_COMMIT_VALUE_VERSION) + _I64.pack(value.offset) + _I32.pack(value.leader_epoch)
            + _string(value.metadata) + _I64.pack(value.commit_timestamp_ms))


def encode_group_metadata_value(value: GroupMetadataValue) -> bytes:
    parts = [
        _I16.pack(GROUP_METADATA_VALUE_VERSION),
        _string(value.protocol_type),
        _I32.pack(value.generation),
        _nullable_string(value.protocol),
        _nullable_string(value.leader),
        _I64.pack(value.current_state_timestamp_ms),
        _I32.pack(len(value.members)),
    ]
    for member in value.members:
        parts += [
            _string(member.member_id),
            _nullable_string(member.group_instance_id),
            _string(member.client_id),
            _string(member.client_host),
            _I32.pack(member.rebalance_timeout_ms),
            _I32.pack(member.session_timeout_ms),
            _bytes(member.subscription),
            _bytes(member.assignment),
        ]
    return b"".join(parts)


# -- reading -----------------------------------------------------------------------------------------

class _Reader:
    """Reads Kafka's classic (v0-v3) and flexible (v4) encodings from one key or value."""

    def __init__(self, data: bytes, flexible: bool = False) -> None:
        self.data = data
        self.pos = 0
        self.flexible = flexible

    def _take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise CorruptRecordError(f"__consumer_offsets record truncated at byte {self.pos}")
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def int16(self) -> int:
        return _I16.unpack(self._take(2))[0]

    def int32(self) -> int:
        return _I32.unpack(self._take(4))[0]

    def int64(self) -> int:
        return _I64.unpack(self._take(8))[0]

    def uvarint(self) -> int:
        value = shift = 0
        while True:
            byte = self._take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 28:
                raise CorruptRecordError("__consumer_offsets record has an overlong varint")

    def _length(self, wide: bool) -> int:
        """-1 for null; compact lengths are stored plus one."""
        if self.flexible:
            return self.uvarint() - 1
        return self.int32() if wide else self.int16()

    def nullable_string(self) -> str | None:
        length = self._length(wide=False)
        if length < 0:
            return None
        try:
            return self._take(length).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CorruptRecordError(f"__consumer_offsets record has bad UTF-8: {exc}") from None

    def string(self) -> str:
        value = self.nullable_string()
        if value is None:
            raise CorruptRecordError("__consumer_offsets record has a null where a string is required")
        return value

    def bytes_(self) -> bytes:
        length = self._length(wide=True)
        return b"" if length < 0 else bytes(self._take(length))

    def array_length(self) -> int:
        return max(self._length(wide=True), 0)

    def skip_tagged_fields(self) -> None:
        if not self.flexible:
            return
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self._take(self.uvarint())


def decode_key(data: bytes) -> OffsetCommitKey | GroupMetadataKey | None:
    """The key of one ``__consumer_offsets`` record; None for key versions we do not know (Kafka skips those:
    newer consumer-group records, KIP-848, share when a newer broker wrote the log)."""
    reader = _Reader(data)
    version = reader.int16()
    if version in (0, 1):
        return OffsetCommitKey(reader.string(), reader.string(), reader.int32())
    if version == 2:
        return GroupMetadataKey(reader.string())
    return None


def decode_offset_commit_value(data: bytes) -> OffsetCommitValue:
    version = _I16.unpack_from(data, 0)[0] if len(data) >= 2 else -1
    if not 0 <= version <= 4:
        raise CorruptRecordError(f"unknown OffsetCommitValue version {version}")
    reader = _Reader(data, flexible=version >= 4)
    reader.pos = 2
    offset = reader.int64()
    leader_epoch = reader.int32() if version >= 3 else -1
    metadata = reader.string()
    commit_timestamp_ms = reader.int64()
    expire_timestamp_ms = reader.int64() if version == 1 else None
    reader.skip_tagged_fields()
    return OffsetCommitValue(offset, leader_epoch, metadata, commit_timestamp_ms, expire_timestamp_ms)


def decode_group_metadata_value(data: bytes) -> GroupMetadataValue:
    version = _I16.unpack_from(data, 0)[0] if len(data) >= 2 else -1
    if not 0 <= version <= 4:
        raise CorruptRecordError(f"unknown GroupMetadataValue version {version}")
    reader = _Reader(data, flexible=version >= 4)
    reader.pos = 2
    protocol_type = reader.string()
    generation = reader.int32()
    protocol = reader.nullable_string()
    leader = reader.nullable_string()
    current_state_timestamp_ms = reader.int64() if version >= 2 else -1
    members = []
    for _ in range(reader.array_length()):
        member_id = reader.string()
        group_instance_id = reader.nullable_string() if version >= 3 else None
        client_id = reader.string()
        client_host = reader.string()
        rebalance_timeout_ms = reader.int32() if version >= 1 else -1
        session_timeout_ms = reader.int32()
        if rebalance_timeout_ms == -1:
            rebalance_timeout_ms = session_timeout_ms  # v0 had one timeout for both
        subscription = reader.bytes_()
        assignment = reader.bytes_()
        reader.skip_tagged_fields()
        members.append(MemberMetadata(member_id, group_instance_id, client_id, client_host,
                                      rebalance_timeout_ms, session_timeout_ms, subscription, assignment))
    reader.skip_tagged_fields()
    return GroupMetadataValue(protocol_type, generation, protocol, leader, current_state_timestamp_ms,
                              tuple(members))
