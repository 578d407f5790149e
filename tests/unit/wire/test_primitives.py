"""Varints, compact lengths and the small helpers shared by the codecs and the record codec."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster.core.errors import ProtocolDecodeError
from cluster.wire import primitives as p

# (value, encoding) pairs from the protocol's definitions (LEB128; zig-zag for signed).
UVARINT_VECTORS = [
    (0, b"\x00"),
    (1, b"\x01"),
    (127, b"\x7f"),
    (128, b"\x80\x01"),
    (300, b"\xac\x02"),
    (16384, b"\x80\x80\x01"),
    (2**32 - 1, b"\xff\xff\xff\xff\x0f"),
]
VARINT_VECTORS = [
    (0, b"\x00"),
    (-1, b"\x01"),
    (1, b"\x02"),
    (-2, b"\x03"),
    (63, b"\x7e"),
    (-64, b"\x7f"),
    (64, b"\x80\x01"),
    (2**31 - 1, b"\xfe\xff\xff\xff\x0f"),
    (-(2**31), b"\xff\xff\xff\xff\x0f"),
]


@pytest.mark.parametrize(("value", "raw"), UVARINT_VECTORS)
def test_uvarint_vectors(value, raw):
    assert p.write_uvarint(value) == raw
    assert p.read_uvarint(raw, 0) == (value, len(raw))
    assert p.read_uvarint(memoryview(b"\xee" + raw), 1) == (value, 1 + len(raw))


@pytest.mark.parametrize(("value", "raw"), VARINT_VECTORS)
def test_varint_vectors(value, raw):
    assert p.write_varint(value) == raw
    assert p.read_varint(raw, 0) == (value, len(raw))


def test_varlong_extremes():
    assert p.write_varlong(-(2**63)) == b"\xff" * 9 + b"\x01"
    assert p.read_varlong(b"\xff" * 9 + b"\x01", 0) == (-(2**63), 10)
    assert p.read_varlong(p.write_varlong(2**63 - 1), 0) == (2**63 - 1, 10)


@given(st.integers(-(2**31), 2**31 - 1))
def test_varint_roundtrip(value):
    raw = p.write_varint(value)
    assert p.read_varint(raw + b"\x00", 0) == (value, len(raw))


@given(st.integers(-(2**63), 2**63 - 1))
def test_varlong_roundtrip(value):
    raw = p.write_varlong(value)
    assert len(raw) <= 10
    assert p.read_varlong(raw, 0) == (value, len(raw))


@given(st.integers(0, 2**64 - 1))
def test_uvarlong_roundtrip(value):
    raw = p.write_uvarlong(value)
    assert p.read_uvarlong(raw, 0) == (value, len(raw))


@pytest.mark.parametrize(
    "reader", [p.read_uvarint, p.read_varint, p.read_varlong, p.read_uvarlong]
)
def test_truncated_varints_raise(reader):
    with pytest.raises(ProtocolDecodeError):
        reader(b"", 0)
    with pytest.raises(ProtocolDecodeError):
        reader(b"\x80\x80", 0)
    with pytest.raises(ProtocolDecodeError):
        reader(b"\x01", 1)


def test_overlong_varints_raise():
    with pytest.raises(ProtocolDecodeError, match="longer than 5"):
        p.read_uvarint(b"\x80" * 5 + b"\x01", 0)
    with pytest.raises(ProtocolDecodeError, match="longer than 5"):
        p.read_varint(b"\x80" * 5 + b"\x01", 0)
    with pytest.raises(ProtocolDecodeError, match="longer than 10"):
        p.read_varlong(b"\x80" * 10 + b"\x01", 0)


def test_compact_lengths_and_strings():
    assert p.write_compact_length(-1) == b"\x00"
    assert p.read_compact_length(b"\x00", 0) == (-1, 1)
    assert p.read_compact_length(b"\x04", 0) == (3, 1)
    assert p.write_compact_nullable_string(None) == b"\x00"
    assert p.write_compact_nullable_string("hé") == b"\x04h\xc3\xa9"
    assert p.read_compact_nullable_string(b"\x04h\xc3\xa9", 0) == ("hé", 4)
    assert p.write_nullable_string(None) == b"\xff\xff"
    assert p.read_nullable_string(b"\xff\xff", 0) == (None, 2)
    assert p.read_nullable_string(b"\x00\x02ab", 0) == ("ab", 4)


def test_string_length_beyond_buffer_raises():
    with pytest.raises(ProtocolDecodeError):
        p.read_nullable_string(b"\x00\x05ab", 0)
    with pytest.raises(ProtocolDecodeError):
        p.read_compact_nullable_string(b"\x7fab", 0)
    with pytest.raises(ProtocolDecodeError):
        p.read_string(b"\xff\xfe", 0)  # negative length for a non-nullable string


def test_invalid_utf8_raises():
    with pytest.raises(ProtocolDecodeError, match="UTF-8"):
        p.read_nullable_string(b"\x00\x02\xff\xfe", 0)


def test_fixed_width_readers():
    assert p.read_int16(b"\xff\xfe", 0) == (-2, 2)
    assert p.read_uint16(b"\xff\xfe", 0) == (65534, 2)
    assert p.read_int32(b"\x00\x00\x01\x00", 0) == (256, 4)
    assert p.read_int64(b"\xff" * 8, 0) == (-1, 8)
    with pytest.raises(ProtocolDecodeError):
        p.read_int32(b"\x00\x00", 0)


def test_uuid():
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert p.read_uuid(p.write_uuid(u), 0) == (u, 16)
    assert p.read_uuid(bytes(16), 0)[0] == p.ZERO_UUID == uuid.UUID(int=0)
    with pytest.raises(ProtocolDecodeError):
        p.read_uuid(bytes(15), 0)


def test_tagged_field_sections():
    # two fields, tags 1 and 4, then a trailing byte that must not be consumed
    raw = b"\x02\x01\x02ab\x04\x00\xee"
    assert p.skip_tagged_fields(raw, 0) == len(raw) - 1
    with pytest.raises(ProtocolDecodeError, match="out of order"):
        p.skip_tagged_fields(b"\x02\x04\x00\x01\x00", 0)
    with pytest.raises(ProtocolDecodeError, match="out of order"):
        p.skip_tagged_fields(b"\x02\x01\x00\x01\x00", 0)
    with pytest.raises(ProtocolDecodeError):
        p.skip_tagged_fields(b"\x01\x01\x09ab", 0)
    out = bytearray()
    p.write_tagged_fields(out, [(1, b"ab"), (300, b"")])
    assert bytes(out) == b"\x02\x01\x02ab\xac\x02\x00"


def test_write_records_accepts_chunks_without_joining():
    out = bytearray()
    p.write_records(out, [b"ab", memoryview(b"cde"), bytearray(b"f")], compact=True)
    assert bytes(out) == b"\x07abcdef"
    out = bytearray()
    p.write_records(out, None, compact=False)
    assert bytes(out) == b"\xff\xff\xff\xff"
    out = bytearray()
    p.write_records(out, memoryview(b"xyz"), compact=False)
    assert bytes(out) == b"\x00\x00\x00\x03xyz"
