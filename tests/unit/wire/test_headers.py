"""Request/response headers, including the KIP-511 ApiVersions escape hatch."""

from __future__ import annotations

import pytest

from cluster.core.errors import ProtocolDecodeError
from cluster.wire import headers
from cluster.wire.headers import (
    RequestHeader,
    UnsupportedApiError,
    UnsupportedApiVersionsError,
    decode_request_header,
    decode_response_header,
    encode_request_header,
    encode_response_header,
)


def test_api_versions_v0_request_header_v1():
    raw = b"\x00\x12\x00\x00\x00\x00\x00\x01\x00\x04kcat"
    header, pos = decode_request_header(raw)
    assert header == RequestHeader(18, 0, 1, "kcat", 1)
    assert pos == len(raw)  # ApiVersions v0 has an empty body


def test_flexible_v3_header_with_null_client_id():
    raw = b"\x00\x12\x00\x03\x00\x00\x00\x07\xff\xff\x00" + b"BODY"
    header, pos = decode_request_header(raw)
    assert (header.api_key, header.api_version, header.correlation_id) == (18, 3, 7)
    assert header.client_id is None
    assert header.header_version == 2
    assert raw[pos:] == b"BODY"


def test_header_v2_skips_tagged_fields_and_rejects_bad_ones():
    base = b"\x00\x03\x00\x0c\x00\x00\x00\x02\x00\x01c"  # Metadata v12, client_id "c"
    header, pos = decode_request_header(base + b"\x01\x07\x02zz" + b"B")
    assert header.client_id == "c" and pos == len(base) + 5
    with pytest.raises(ProtocolDecodeError):
        decode_request_header(base + b"\x02\x07\x00\x07\x00")
    with pytest.raises(ProtocolDecodeError):
        decode_request_header(base)  # the tagged-field section is missing


def test_controlled_shutdown_v0_uses_header_v0():
    raw = b"\x00\x07\x00\x00\x00\x00\x00\x05" + b"\x00\x00\x00\x01"
    header, pos = decode_request_header(raw)
    assert header == RequestHeader(7, 0, 5, None, 0)
    assert pos == 8


def test_decode_at_offset_and_from_memoryview():
    frame = b"\x00\x00\x00\x0e" + b"\x00\x00\x00\x08\x00\x00\x00\x09\x00\x02id"
    header, pos = decode_request_header(memoryview(frame), 4)
    assert header == RequestHeader(0, 8, 9, "id", 1)
    assert pos == len(frame)


def test_unknown_api_key_raises_with_ids():
    with pytest.raises(UnsupportedApiError) as info:
        decode_request_header(b"\x03\xe7\x00\x00\x00\x00\x00\x2a\x00\x00")
    assert (info.value.api_key, info.value.api_version, info.value.correlation_id) == (999, 0, 42)
    assert isinstance(info.value, ProtocolDecodeError)


def test_version_out_of_range_raises():
    with pytest.raises(UnsupportedApiError) as info:
        decode_request_header(b"\x00\x00\x00\x0c\x00\x00\x00\x01\x00\x00")  # Produce v12
    assert info.value.api_version == 12
    with pytest.raises(UnsupportedApiError):
        decode_request_header(b"\x00\x00\xff\xff\x00\x00\x00\x01\x00\x00")  # Produce v-1


def test_supported_table_restricts():
    raw = b"\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00"  # Produce v2
    with pytest.raises(UnsupportedApiError):
        decode_request_header(raw, supported={0: (3, 11)})
    with pytest.raises(UnsupportedApiError):
        decode_request_header(raw, supported={18: (0, 4)})  # api not served at all
    assert decode_request_header(raw, supported={0: (2, 11)})[0].api_version == 2


def test_newer_api_versions_request_is_signalled_not_closed():
    raw = b"\x00\x12\x00\x09\x00\x00\x00\x0b\x00\x03cli\x00" + b"future body"
    with pytest.raises(UnsupportedApiVersionsError) as info:
        decode_request_header(raw)
    assert not isinstance(info.value, ProtocolDecodeError)
    assert info.value.header == RequestHeader(18, 9, 11, "cli", 2)
    assert raw[info.value.pos:] == b"future body"
    # beyond the caller's own maximum too
    with pytest.raises(UnsupportedApiVersionsError):
        decode_request_header(b"\x00\x12\x00\x04\x00\x00\x00\x0b\xff\xff\x00", supported={18: (0, 3)})


def test_newer_api_versions_request_header_parsed_leniently():
    # no tagged-field section at all, and an odd one: still answered
    with pytest.raises(UnsupportedApiVersionsError) as info:
        decode_request_header(b"\x00\x12\x00\x09\x00\x00\x00\x0b\x00\x03cli")
    assert info.value.header.client_id == "cli"
    with pytest.raises(UnsupportedApiVersionsError):
        decode_request_header(b"\x00\x12\x00\x09\x00\x00\x00\x0b\xff\xff\x05")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\x12\x00\x00\x00\x00\x00",  # 7 bytes
        b"\x00\x12\x00\x00\x00\x00\x00\x01\x00",  # half a client_id length
        b"\x00\x12\x00\x00\x00\x00\x00\x01\x00\x05kc",  # client_id longer than the buffer
        b"\x00\x12\x00\x00\x00\x00\x00\x01\x00\x02\xff\xfe",  # invalid UTF-8
    ],
)
def test_malformed_headers_raise(raw):
    with pytest.raises(ProtocolDecodeError):
        decode_request_header(raw)


def test_encode_request_header_roundtrip():
    for api_key, version, client_id in [(18, 0, "a"), (18, 3, None), (7, 0, "x"), (1, 12, "cl")]:
        raw = encode_request_header(api_key, version, 77, client_id)
        header, pos = decode_request_header(raw)
        assert pos == len(raw)
        assert (header.api_key, header.api_version, header.correlation_id) == (api_key, version, 77)
        assert header.client_id == (client_id if header.header_version >= 1 else None)
    assert encode_request_header(18, 3, 7, None) == b"\x00\x12\x00\x03\x00\x00\x00\x07\xff\xff\x00"


def test_response_headers():
    assert encode_response_header(5, 0) == b"\x00\x00\x00\x05"
    assert encode_response_header(5, 1) == b"\x00\x00\x00\x05\x00"
    assert decode_response_header(b"\x00\x00\x00\x05\x00B", 0, 1) == (5, 5)
    assert decode_response_header(b"\x00\x00\x00\x05B", 0, 0) == (5, 4)
    with pytest.raises(ProtocolDecodeError):
        decode_response_header(b"\x00\x00\x00\x05", 0, 1)
    assert headers.response_header_version(18, 3) == 0
