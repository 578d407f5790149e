"""Kafka wire primitives: the variable-length integers and length prefixes every codec shares.

The generated message codecs (cluster/wire/messages/) inline their own fast paths, but the
record-batch codec (cluster/wire/records.py) and the hand-written headers need the same encodings as
plain functions, and the generated code needs a few shared slow paths (multi-byte varints, error
construction, tagged-field sections) that would only bloat it if inlined.  Every reader takes ``(buf, pos)`` and returns ``(value, new_pos)``; every writer
returns ``bytes``.  Readers raise ``ProtocolDecodeError`` on truncation or on a varint longer
than Kafka allows (5 bytes for 32-bit, 10 bytes for 64-bit values), never ``IndexError``.
"""

from __future__ import annotations

import struct
import uuid

from cluster.core.errors import ProtocolDecodeError

INT8 = struct.Struct(">b")
INT16 = struct.Struct(">h")
INT32 = struct.Struct(">i")
INT64 = struct.Struct(">q")
UINT16 = struct.Struct(">H")
UINT32 = struct.Struct(">I")
FLOAT64 = struct.Struct(">d")
_UUID = struct.Struct(">QQ")

_MAX_UVARINT_BYTES = 5
_MAX_UVARLONG_BYTES = 10


def _read_unsigned(buf, pos: int, max_bytes: int, what: str) -> tuple[int, int]:
    # The loop is the protocol's definition: 7 payload bits per byte, high bit = "more follows".
    end = len(buf)
    value = 0
    shift = 0
    for _ in range(max_bytes):
        if pos >= end:
            raise ProtocolDecodeError(f"truncated {what} at offset {pos}")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
    raise ProtocolDecodeError(f"{what} longer than {max_bytes} bytes at offset {pos - max_bytes}")


def read_uvarint(buf, pos: int) -> tuple[int, int]:
    """Unsigned varint (at most 5 bytes), as used for compact lengths and tags."""
    if pos < len(buf):
        b = buf[pos]
        if b < 0x80:  # one-byte fast path: the overwhelmingly common case
            return b, pos + 1
    value, pos = _read_unsigned(buf, pos, _MAX_UVARINT_BYTES, "uvarint")
    return value & 0xFFFFFFFF, pos


def read_uvarlong(buf, pos: int) -> tuple[int, int]:
    """Unsigned varlong (at most 10 bytes)."""
    value, pos = _read_unsigned(buf, pos, _MAX_UVARLONG_BYTES, "uvarlong")
    return value & 0xFFFFFFFFFFFFFFFF, pos


def read_varint(buf, pos: int) -> tuple[int, int]:
    """Zig-zag signed 32-bit varint, as used inside records (key/value lengths, deltas)."""
    if pos < len(buf):
        b = buf[pos]
        if b < 0x80:
            return (b >> 1) ^ -(b & 1), pos + 1
    raw, pos = _read_unsigned(buf, pos, _MAX_UVARINT_BYTES, "varint")
    raw &= 0xFFFFFFFF
    return (raw >> 1) ^ -(raw & 1), pos


def read_varlong(buf, pos: int) -> tuple[int, int]:
    """Zig-zag signed 64-bit varlong (at most 10 bytes), as used for timestamp deltas."""
    if pos < len(buf):
        b = buf[pos]
        if b < 0x80:
            return (b >> 1) ^ -(b & 1), pos + 1
    raw, pos = _read_unsigned(buf, pos, _MAX_UVARLONG_BYTES, "varlong")
    raw &= 0xFFFFFFFFFFFFFFFF
    return (raw >> 1) ^ -(raw & 1), pos


_ONE_BYTE = [bytes((i,)) for i in range(128)]


def _write_unsigned(value: int) -> bytes:
    if value < 0x80:
        return _ONE_BYTE[value]
    if value < 0x4000:  # two bytes: lengths of typical strings and record batches up to 16 KiB
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def write_uvarint(value: int) -> bytes:
    """Unsigned varint; values are taken modulo 2**32 like Java's int."""
    return _write_unsigned(value & 0xFFFFFFFF)


def write_uvarlong(value: int) -> bytes:
    return _write_unsigned(value & 0xFFFFFFFFFFFFFFFF)


def write_varint(value: int) -> bytes:
    """Zig-zag signed 32-bit varint."""
    return _write_unsigned(((value << 1) ^ (value >> 31)) & 0xFFFFFFFF)


def write_varlong(value: int) -> bytes:
    """Zig-zag signed 64-bit varlong."""
    return _write_unsigned(((value << 1) ^ (value >> 63)) & 0xFFFFFFFFFFFFFFFF)


def _read_fixed(st: struct.Struct, buf, pos: int, what: str):
    try:
        return st.unpack_from(buf, pos)[0], pos + st.size
    except struct.error:
        raise ProtocolDecodeError(f"truncated {what} at offset {pos}") from None


def read_int8(buf, pos: int) -> tuple[int, int]:
    return _read_fixed(INT8, buf, pos, "int8")


def read_int16(buf, pos: int) -> tuple[int, int]:
    return _read_fixed(INT16, buf, pos, "int16")


def read_int32(buf, pos: int) -> tuple[int, int]:
    return _read_fixed(INT32, buf, pos, "int32")


def read_int64(buf, pos: int) -> tuple[int, int]:
    return _read_fixed(INT64, buf, pos, "int64")


def read_uint16(buf, pos: int) -> tuple[int, int]:
    return _read_fixed(UINT16, buf, pos, "uint16")


def read_uint32(buf, pos: int) -> tuple[int, int]:
    return _read_fixed(UINT32, buf, pos, "uint32")


def read_float64(buf, pos: int) -> tuple[float, int]:
    return _read_fixed(FLOAT64, buf, pos, "float64")


def read_uuid(buf, pos: int) -> tuple[uuid.UUID, int]:
    end = pos + 16
    if end > len(buf):
        raise ProtocolDecodeError(f"truncated uuid at offset {pos}")
    return uuid_from_bytes(bytes(buf[pos:end])), end


def write_uuid(value: uuid.UUID) -> bytes:
    return value.bytes


def check_length(buf, pos: int, length: int, what: str) -> None:
    """Rejects a declared length that is negative or exceeds the bytes left, before anything is allocated."""
    if length < 0 or pos + length > len(buf):
        raise ProtocolDecodeError(
            f"{what} length {length} at offset {pos} exceeds the {len(buf) - pos} bytes remaining"
        )


def read_compact_length(buf, pos: int) -> tuple[int, int]:
    """Compact (flexible-version) length: uvarint N+1, where 0 means null (returned as -1)."""
    n, pos = read_uvarint(buf, pos)
    return n - 1, pos


def write_compact_length(length: int) -> bytes:
    """Inverse of ``read_compact_length``; -1 encodes null."""
    return _write_unsigned(length + 1)


def _decode_utf8(raw, pos: int) -> str:
    try:
        return str(raw, "utf-8")
    except UnicodeDecodeError:
        raise ProtocolDecodeError(f"invalid UTF-8 in string at offset {pos}") from None


def read_nullable_string(buf, pos: int) -> tuple[str | None, int]:
    """Classic string: int16 length (-1 = null) then UTF-8 bytes."""
    n, pos = read_int16(buf, pos)
    if n == -1:
        return None, pos
    check_length(buf, pos, n, "string")
    return _decode_utf8(buf[pos : pos + n], pos), pos + n


def read_compact_nullable_string(buf, pos: int) -> tuple[str | None, int]:
    n, pos = read_compact_length(buf, pos)
    if n == -1:
        return None, pos
    check_length(buf, pos, n, "compact string")
    return _decode_utf8(buf[pos : pos + n], pos), pos + n


def write_nullable_string(value: str | None) -> bytes:
    if value is None:
        return INT16.pack(-1)
    raw = value.encode("utf-8")
    return INT16.pack(len(raw)) + raw


def write_compact_nullable_string(value: str | None) -> bytes:
    if value is None:
        return b"\x00"
    raw = value.encode("utf-8")
    return write_compact_length(len(raw)) + raw


def skip_tagged_fields(buf, pos: int) -> int:
    """Skips a tagged-field section (uvarint count, then tag/size/bytes), validating tag order."""
    count, pos = read_uvarint(buf, pos)
    return skip_tagged_fields_n(buf, pos, count)


# --------------------------------------------------------------------------------------------
# Runtime support for the generated codecs in cluster/wire/messages/.
# --------------------------------------------------------------------------------------------

ZERO_UUID = uuid.UUID(int=0)
_ZERO_UUID_BYTES = bytes(16)


class _Unset:
    """Marks a keyword argument left out, where the real default is a fresh mutable object."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()


class StructBase:
    """Base of every generated message struct: field-wise equality and a readable repr.

    Deliberately no ``__getattr__`` (say, for lazy defaults): a class defining one loses CPython's
    specialised attribute access, which made encoding half again slower.
    """

    __slots__ = ()
    __hash__ = None  # mutable, like the lists inside it

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        for name in self.__slots__:
            if getattr(self, name) != getattr(other, name):
                return False
        return True

    def __repr__(self) -> str:
        parts = []
        for name in self.__slots__:
            value = getattr(self, name)
            if isinstance(value, memoryview):  # records: show the size, not the address
                parts.append(f"{name}=<{value.nbytes} bytes>")
            else:
                parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


def uuid_from_bytes(raw: bytes) -> uuid.UUID:
    return ZERO_UUID if raw == _ZERO_UUID_BYTES else uuid.UUID(bytes=bytes(raw))


def bad_length(what: str, length: int, pos: int, buf) -> ProtocolDecodeError:
    return ProtocolDecodeError(
        f"{what}: length {length} at offset {pos} is negative or exceeds the {len(buf) - pos} bytes remaining"
    )


def bad_tag_order(tag: int, last: int, pos: int) -> ProtocolDecodeError:
    return ProtocolDecodeError(f"tagged field {tag} follows tag {last} (out of order or duplicated) at offset {pos}")


def bad_tag_size(tag: int, size: int, pos: int, end: int) -> ProtocolDecodeError:
    return ProtocolDecodeError(f"tagged field {tag} declared {size} bytes but its value ended at {pos}, not {end}")


def unsupported_version(name: str, version: int) -> ProtocolDecodeError:
    return ProtocolDecodeError(f"{name} has no version {version}")


def decode_entry(fn, buf, pos: int, name: str, version: int):
    """Runs a generated decoder, turning the errors of reading past the end into ProtocolDecodeError.

    The generated code checks every declared length before slicing or allocating; fixed-width reads
    and single bytes are left to fail naturally (struct.error, IndexError) and are translated here,
    which costs nothing on the happy path.
    """
    if type(buf) is not memoryview:
        buf = memoryview(buf)
    try:
        return fn(buf, pos)
    except (IndexError, struct.error):
        raise ProtocolDecodeError(f"truncated {name} v{version} (buffer of {len(buf)} bytes from {pos})") from None
    except UnicodeDecodeError:
        raise ProtocolDecodeError(f"invalid UTF-8 in a string of {name} v{version}") from None


def read_string(buf, pos: int) -> tuple[str, int]:
    """Non-nullable classic string (array elements)."""
    n = INT16.unpack_from(buf, pos)[0]
    pos += 2
    end = pos + n
    if n < 0 or end > len(buf):
        raise bad_length("string", n, pos, buf)
    return _decode_utf8(buf[pos:end], pos), end


def read_compact_string(buf, pos: int) -> tuple[str, int]:
    """Non-nullable compact string (array elements in flexible versions)."""
    n, pos = read_uvarint(buf, pos)
    n -= 1
    end = pos + n
    if n < 0 or end > len(buf):
        raise bad_length("compact string", n, pos, buf)
    return _decode_utf8(buf[pos:end], pos), end


def read_bytes(buf, pos: int) -> tuple[bytes, int]:
    n = INT32.unpack_from(buf, pos)[0]
    pos += 4
    end = pos + n
    if n < 0 or end > len(buf):
        raise bad_length("bytes", n, pos, buf)
    return bytes(buf[pos:end]), end


def read_compact_bytes(buf, pos: int) -> tuple[bytes, int]:
    n, pos = read_uvarint(buf, pos)
    n -= 1
    end = pos + n
    if n < 0 or end > len(buf):
        raise bad_length("compact bytes", n, pos, buf)
    return bytes(buf[pos:end]), end


def write_string(value: str) -> bytes:
    raw = value.encode("utf-8")
    return INT16.pack(len(raw)) + raw


def write_compact_string(value: str) -> bytes:
    raw = value.encode("utf-8")
    return _write_unsigned(len(raw) + 1) + raw


def write_bytes(value) -> bytes:
    return INT32.pack(len(value)) + bytes(value)


def write_compact_bytes(value) -> bytes:
    return _write_unsigned(len(value) + 1) + bytes(value)


def _nbytes(chunk) -> int:
    return chunk.nbytes if isinstance(chunk, memoryview) else len(chunk)


def write_records(out: bytearray, value, compact: bool) -> None:
    """Writes a RECORDS field: nullable bytes given as one bytes-like object or a list of chunks.

    The broker's fetch path hands over several chunks read from segment files; they are copied once,
    straight into ``out``, never joined first.
    """
    if type(value) is bytes:  # the common case first
        n = len(value)
        out += _write_unsigned(n + 1) if compact else INT32.pack(n)
        out += value
        return
    if value is None:
        out += b"\x00" if compact else b"\xff\xff\xff\xff"
        return
    if isinstance(value, list):
        total = 0
        for chunk in value:
            total += _nbytes(chunk)
        out += _write_unsigned(total + 1) if compact else INT32.pack(total)
        for chunk in value:
            out += chunk
        return
    n = _nbytes(value)
    out += _write_unsigned(n + 1) if compact else INT32.pack(n)
    out += value


def write_tagged_fields(out: bytearray, fields: list) -> None:
    """Writes a tagged-field section from (tag, payload) pairs already in ascending tag order."""
    out += _write_unsigned(len(fields))
    for tag, payload in fields:
        out += _write_unsigned(tag)
        out += _write_unsigned(len(payload))
        out += payload


def skip_tagged_fields_n(buf, pos: int, count: int) -> int:
    """Skips ``count`` tagged fields none of which this version knows, validating their order."""
    last_tag = -1
    for _ in range(count):
        tag, pos = read_uvarint(buf, pos)
        if tag <= last_tag:
            raise bad_tag_order(tag, last_tag, pos)
        last_tag = tag
        size, pos = read_uvarint(buf, pos)
        if pos + size > len(buf):
            raise bad_length("tagged field", size, pos, buf)
        pos += size
    return pos
