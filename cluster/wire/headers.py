"""Request and response headers: the part of a frame read before we know how to read the body.

A request header says which API and version the body is, so it must be parsed before any generated
codec can run, and its own layout depends on that API and version (header v0/v1/v2).  Two cases need
care (reference/kafka-protocol.md §4.1, §4.3):

* an unknown api_key, or a version outside the supported range: Kafka cannot parse the body and
  closes the connection; we raise ``UnsupportedApiError`` (a ``ProtocolDecodeError``) carrying the
  ids, so the caller can log them before closing;
* ApiVersions at a version above the newest we know (a newer client probing, KIP-511): the header is
  read leniently as v2 and ``UnsupportedApiVersionsError`` is raised, carrying the parsed header; the
  caller must then answer with a v0-format ApiVersionsResponse body (error_code UNSUPPORTED_VERSION
  and its ApiVersions range) under a v0 response header, not close the connection.

``client_id`` is a nullable string with an int16 length in every header version, even in the
flexible v2 (RequestHeader.json overrides flexibleVersions for it), so any broker can read any
ApiVersions header.
"""

from __future__ import annotations

from cluster.core.errors import ProtocolDecodeError
from cluster.wire.messages import API_KEYS, request_header_version, response_header_version
from cluster.wire.primitives import (
    INT16,
    INT32,
    StructBase,
    bad_length,
    read_uvarint,
    skip_tagged_fields_n,
    write_nullable_string,
)

__all__ = [
    "API_VERSIONS_KEY",
    "RequestHeader",
    "UnsupportedApiError",
    "UnsupportedApiVersionsError",
    "decode_request_header",
    "decode_response_header",
    "encode_request_header",
    "encode_response_header",
    "request_header_version",
    "response_header_version",
]

API_VERSIONS_KEY = 18
_FIXED = INT16.size + INT16.size + INT32.size  # api_key, api_version, correlation_id


class RequestHeader(StructBase):
    """A parsed request header; ``header_version`` (0, 1 or 2) is how it was encoded."""

    __slots__ = ("api_key", "api_version", "correlation_id", "client_id", "header_version")

    def __init__(
        self,
        api_key: int,
        api_version: int,
        correlation_id: int,
        client_id: str | None = None,
        header_version: int | None = None,
    ) -> None:
        self.api_key = api_key
        self.api_version = api_version
        self.correlation_id = correlation_id
        self.client_id = client_id
        self.header_version = header_version


class UnsupportedApiError(ProtocolDecodeError):
    """Unknown api_key or unsupported version: the caller closes the connection, as Kafka does."""

    def __init__(self, api_key: int, api_version: int, correlation_id: int) -> None:
        known = api_key in API_KEYS
        what = f"version {api_version} of api_key {api_key}" if known else f"unknown api_key {api_key}"
        super().__init__(f"unsupported request: {what} (correlation_id {correlation_id})")
        self.api_key = api_key
        self.api_version = api_version
        self.correlation_id = correlation_id


class UnsupportedApiVersionsError(Exception):
    """An ApiVersions request newer than we know: answer with a v0 body and error UNSUPPORTED_VERSION.

    Not a ProtocolDecodeError on purpose: a generic "close on decode error" handler must not swallow
    it.  ``header`` is the parsed header; ``pos`` is where the (unparsed) body starts.
    """

    def __init__(self, header: RequestHeader, pos: int) -> None:
        super().__init__(f"ApiVersions v{header.api_version} is newer than supported (KIP-511)")
        self.header = header
        self.pos = pos


def _read_client_id(buf, pos: int) -> tuple[str | None, int]:
    if pos + 2 > len(buf):
        raise ProtocolDecodeError(f"truncated request header: client_id length at offset {pos}")
    n = INT16.unpack_from(buf, pos)[0]
    pos += 2
    if n < 0:
        return None, pos
    end = pos + n
    if end > len(buf):
        raise bad_length("client_id", n, pos, buf)
    try:
        return str(buf[pos:end], "utf-8"), end
    except UnicodeDecodeError:
        raise ProtocolDecodeError("invalid UTF-8 in client_id") from None


def _skip_header_tags(buf, pos: int) -> int:
    count, pos = read_uvarint(buf, pos)
    return skip_tagged_fields_n(buf, pos, count)


def decode_request_header(
    buf, pos: int = 0, supported: dict[int, tuple[int, int]] | None = None
) -> tuple[RequestHeader, int]:
    """Parses a request header at ``pos`` (just after the frame's size); returns (header, body_pos).

    ``supported`` maps api_key -> (min, max) versions the caller accepts; by default every version
    the Kafka 3.9 schemas define.  Raises UnsupportedApiError, UnsupportedApiVersionsError (see the
    module docstring) or ProtocolDecodeError for a malformed header.
    """
    if pos + _FIXED > len(buf):
        raise ProtocolDecodeError(f"truncated request header: {len(buf) - pos} bytes")
    api_key = INT16.unpack_from(buf, pos)[0]
    api_version = INT16.unpack_from(buf, pos + 2)[0]
    correlation_id = INT32.unpack_from(buf, pos + 4)[0]
    pos += _FIXED
    if api_key not in API_KEYS or (supported is not None and api_key not in supported):
        raise UnsupportedApiError(api_key, api_version, correlation_id)
    lo, hi = supported[api_key] if supported is not None else API_KEYS[api_key].valid_versions
    if api_version > hi and api_key == API_VERSIONS_KEY:
        header = RequestHeader(api_key, api_version, correlation_id, None, 2)
        header.client_id, pos = _read_client_id(buf, pos)
        if pos < len(buf):
            try:  # lenient: a future header might differ; the body is not parsed anyway
                pos = _skip_header_tags(buf, pos)
            except ProtocolDecodeError:
                pass
        raise UnsupportedApiVersionsError(header, pos)
    if not lo <= api_version <= hi:
        raise UnsupportedApiError(api_key, api_version, correlation_id)
    version = request_header_version(api_key, api_version)
    client_id = None
    if version >= 1:
        client_id, pos = _read_client_id(buf, pos)
    if version >= 2:
        pos = _skip_header_tags(buf, pos)
    return RequestHeader(api_key, api_version, correlation_id, client_id, version), pos


def encode_request_header(
    api_key: int,
    api_version: int,
    correlation_id: int,
    client_id: str | None,
    header_version: int | None = None,
) -> bytes:
    """Encodes a request header (for our own client); the version comes from the API table if omitted."""
    if header_version is None:
        header_version = request_header_version(api_key, api_version)
    out = INT16.pack(api_key) + INT16.pack(api_version) + INT32.pack(correlation_id)
    if header_version >= 1:
        out += write_nullable_string(client_id)
    if header_version >= 2:
        out += b"\x00"  # no tagged fields
    return out


_RESPONSE_V1_SUFFIX = b"\x00"


def encode_response_header(correlation_id: int, header_version: int) -> bytes:
    """Response header v0 is the correlation_id; v1 adds an empty tagged-field section."""
    if header_version == 0:
        return INT32.pack(correlation_id)
    return INT32.pack(correlation_id) + _RESPONSE_V1_SUFFIX


def decode_response_header(buf, pos: int, header_version: int) -> tuple[int, int]:
    """Returns (correlation_id, body_pos); for our own client."""
    if pos + 4 > len(buf):
        raise ProtocolDecodeError("truncated response header")
    correlation_id = INT32.unpack_from(buf, pos)[0]
    pos += 4
    if header_version >= 1:
        if pos >= len(buf):
            raise ProtocolDecodeError("truncated response header: missing tagged fields")
        pos = _skip_header_tags(buf, pos)
    return correlation_id, pos
