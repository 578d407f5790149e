"""One TCP connection to one broker: framing, correlation ids, pipelining and version negotiation.

Kafka clients keep several requests in flight on one socket and match each response to its request by
correlation id (brokers answer in order, but matching by id costs nothing and survives a request we gave
up waiting for).  The first request on every connection is ApiVersions; after it, each API is used at
``min(our max, broker max)``, and refused with UNSUPPORTED_VERSION when the two ranges do not meet, as
Kafka's NetworkClient does.  ``CLIENT_VERSIONS`` lists the ranges whose semantics this client implements
(the generated codecs could encode any version; the client code fills only the fields these versions have).

A response is decoded in the reader task, so a malformed frame fails only the request it answers.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import struct

from cluster.client.errors import BrokerConnectionError, RequestTimeoutError, error_from_code
from cluster.client.types import format_address
from cluster.core.errors import ErrorCode, KafkaError, ProtocolDecodeError
from cluster.wire.headers import decode_response_header, encode_request_header
from cluster.wire.messages import API_KEYS, response_header_version
from cluster.wire.messages import api_versions_request as avq

__all__ = ["CLIENT_VERSIONS", "BrokerConnection", "ApiKey"]

log = logging.getLogger("cluster.client")

_SIZE = struct.Struct(">i")
_INT32_MAX = 0x7FFFFFFF
# A response larger than this is a corrupt size field, not data (fetch max_bytes is far below it).
_MAX_FRAME_BYTES = 1 << 30
_CLIENT_SOFTWARE_NAME = "kraftpy"
_CLIENT_SOFTWARE_VERSION = "0.1.0"


class ApiKey:
    PRODUCE = 0
    FETCH = 1
    LIST_OFFSETS = 2
    METADATA = 3
    OFFSET_COMMIT = 8
    OFFSET_FETCH = 9
    FIND_COORDINATOR = 10
    DESCRIBE_GROUPS = 15
    LIST_GROUPS = 16
    API_VERSIONS = 18
    CREATE_TOPICS = 19
    DELETE_TOPICS = 20
    DESCRIBE_CONFIGS = 32
    CREATE_PARTITIONS = 37
    DELETE_GROUPS = 42
    ELECT_LEADERS = 43
    ALTER_PARTITION_REASSIGNMENTS = 45
    LIST_PARTITION_REASSIGNMENTS = 46


# api_key -> (min, max) versions this client implements.  Minimums: Produce 3 / Fetch 4 are the first
# RecordBatch v2 versions; Metadata 1 is the first with a null "all topics" list and controller_id.
# Group APIs: OffsetFetch 2 is the first with a top-level error and the null "all topics" list, OffsetCommit 2
# the first without commit timestamps; the maxima are the last versions of one-group/one-key requests
# (FindCoordinator 4 and OffsetFetch 8 batch several groups, which this client does not need).
CLIENT_VERSIONS: dict[int, tuple[int, int]] = {
    ApiKey.PRODUCE: (3, 9),
    ApiKey.FETCH: (4, 12),
    ApiKey.LIST_OFFSETS: (1, 7),
    ApiKey.METADATA: (1, 12),
    ApiKey.API_VERSIONS: (0, 3),
    ApiKey.CREATE_TOPICS: (2, 7),
    ApiKey.DELETE_TOPICS: (1, 6),
    ApiKey.DESCRIBE_CONFIGS: (1, 4),
    ApiKey.CREATE_PARTITIONS: (0, 3),
    ApiKey.OFFSET_COMMIT: (2, 9),
    ApiKey.OFFSET_FETCH: (2, 7),
    ApiKey.FIND_COORDINATOR: (0, 3),
    ApiKey.DESCRIBE_GROUPS: (0, 5),
    ApiKey.LIST_GROUPS: (0, 4),
    ApiKey.DELETE_GROUPS: (0, 2),
    ApiKey.ELECT_LEADERS: (1, 2),   # v1: the first with an election type and a top-level error
    ApiKey.ALTER_PARTITION_REASSIGNMENTS: (0, 0),
    ApiKey.LIST_PARTITION_REASSIGNMENTS: (0, 0),
}


def api_name(api_key: int) -> str:
    spec = API_KEYS.get(api_key)
    return spec.name if spec is not None else f"api_key {api_key}"


def negotiate_version(api_key: int, broker_versions: dict[int, tuple[int, int]], address: str) -> int:
    """``min(our max, broker max)``, or KafkaError(UNSUPPORTED_VERSION) naming both ranges."""
    ours = CLIENT_VERSIONS[api_key]
    theirs = broker_versions.get(api_key)
    name = api_name(api_key)
    if theirs is None:
        raise KafkaError(ErrorCode.UNSUPPORTED_VERSION, f"broker {address} does not support {name}")
    version = min(ours[1], theirs[1])
    if version < max(ours[0], theirs[0]):
        raise KafkaError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"broker {address} supports {name} v{theirs[0]}-{theirs[1]}, this client v{ours[0]}-{ours[1]}",
        )
    return version


def decode_response(api_key: int, version: int, frame) -> object:
    """Decodes a response frame (without its size prefix) sent for ``api_key`` at ``version``.

    ApiVersions is special (KIP-511): a broker that does not know our version answers in v0 form, so a
    body that does not parse at our version is parsed again as v0, as Kafka's ApiVersionsResponse.parse does.
    """
    _, pos = decode_response_header(frame, 0, response_header_version(api_key, version))
    module = API_KEYS[api_key].response_module
    try:
        body, _ = module.decode(frame, pos, version)
    except ProtocolDecodeError:
        if api_key != ApiKey.API_VERSIONS or version == 0:
            raise
        body, _ = module.decode(frame, pos, 0)
    return body


class BrokerConnection:
    """A connected, negotiated socket to one broker.  Use ``await BrokerConnection.open(...)``."""

    def __init__(
        self,
        host: str,
        port: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        client_id: str,
        request_timeout_ms: int,
    ) -> None:
        self.host = host
        self.port = port
        self.address = format_address(host, port)
        self.client_id = client_id
        self.request_timeout_ms = request_timeout_ms
        self.api_versions: dict[int, tuple[int, int]] = {}
        self._reader = reader
        self._writer = writer
        self._correlation_ids = itertools.count(1)
        # correlation_id -> (future, api_key, api_version)
        self._pending: dict[int, tuple[asyncio.Future, int, int]] = {}
        self._closed_error: BrokerConnectionError | None = None
        self._read_task = asyncio.get_running_loop().create_task(self._read_loop())

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        client_id: str = "kraftpy",
        connect_timeout_ms: int = 10_000,
        request_timeout_ms: int = 30_000,
    ) -> BrokerConnection:
        """Connects and negotiates API versions; raises BrokerConnectionError naming the address."""
        address = format_address(host, port)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), timeout=connect_timeout_ms / 1000
            )
        except TimeoutError:
            raise BrokerConnectionError(address, f"no connection within {connect_timeout_ms} ms") from None
        except socket.gaierror as exc:
            raise BrokerConnectionError(address, f"cannot resolve host: {exc.strerror}") from None
        except OSError as exc:
            reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            raise BrokerConnectionError(address, f"cannot connect: {reason}") from None
        connection = cls(host, port, reader, writer, client_id=client_id, request_timeout_ms=request_timeout_ms)
        try:
            await connection._negotiate()
        except BaseException:
            await connection.close()
            raise
        return connection

    @property
    def closed(self) -> bool:
        return self._closed_error is not None

    def version_for(self, api_key: int) -> int:
        return negotiate_version(api_key, self.api_versions, self.address)

    async def request(self, api_key: int, body, *, version: int | None = None, timeout_ms: int | None = None):
        """Sends one request and waits for its decoded response body."""
        if version is None:
            version = self.version_for(api_key)
        future = self._send(api_key, version, body, expect_response=True)
        timeout_s = (timeout_ms if timeout_ms is not None else self.request_timeout_ms) / 1000
        try:
            return await asyncio.wait_for(future, timeout=timeout_s)
        except TimeoutError:
            raise RequestTimeoutError(
                self.address, f"no response to {api_name(api_key)} v{version} within {timeout_s * 1000:.0f} ms"
            ) from None

    def send_without_response(self, api_key: int, body, *, version: int | None = None) -> None:
        """Sends a request the broker never answers (Produce with acks=0)."""
        if version is None:
            version = self.version_for(api_key)
        self._send(api_key, version, body, expect_response=False)

    async def drain(self) -> None:
        """Waits until the socket buffer has room again (backpressure for large produce streams)."""
        self._check_open()
        try:
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            raise BrokerConnectionError(self.address, f"connection lost ({exc})") from None

    async def close(self) -> None:
        self._fail_pending(BrokerConnectionError(self.address, "connection closed by the client"))
        self._read_task.cancel()
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass  # already reset by the peer: closing is all we wanted
        try:
            await self._read_task
        except (asyncio.CancelledError, Exception):
            pass

    # -- internals ---------------------------------------------------------------------------------

    async def _negotiate(self) -> None:
        version = CLIENT_VERSIONS[ApiKey.API_VERSIONS][1]
        request = avq.ApiVersionsRequest(
            client_software_name=_CLIENT_SOFTWARE_NAME, client_software_version=_CLIENT_SOFTWARE_VERSION
        )
        response = await self.request(ApiKey.API_VERSIONS, request, version=version)
        if response.error_code == ErrorCode.UNSUPPORTED_VERSION:
            # KIP-511: the broker told us its ApiVersions range in a v0 body; retry within it.
            ranges = {entry.api_key: (entry.min_version, entry.max_version) for entry in response.api_keys}
            broker_max = ranges.get(ApiKey.API_VERSIONS, (0, 0))[1]
            version = min(version, broker_max)
            response = await self.request(ApiKey.API_VERSIONS, avq.ApiVersionsRequest(), version=version)
        if response.error_code:
            raise error_from_code(response.error_code, None, api="ApiVersions", resource=self.address)
        self.api_versions = {
            entry.api_key: (entry.min_version, entry.max_version) for entry in response.api_keys
        }

    def _check_open(self) -> None:
        if self._closed_error is not None:
            raise BrokerConnectionError(self.address, self._closed_error.reason)

    def _next_correlation_id(self) -> int:
        correlation_id = next(self._correlation_ids)
        if correlation_id > _INT32_MAX:  # int32 on the wire: wrap like Java's counter would be reset
            self._correlation_ids = itertools.count(1)
            correlation_id = next(self._correlation_ids)
        return correlation_id

    def _send(self, api_key: int, version: int, body, *, expect_response: bool) -> asyncio.Future | None:
        self._check_open()
        correlation_id = self._next_correlation_id()
        payload = bytearray(encode_request_header(api_key, version, correlation_id, self.client_id))
        API_KEYS[api_key].request_module.encode_into(payload, body, version)
        future = None
        if expect_response:
            future = asyncio.get_running_loop().create_future()
            self._pending[correlation_id] = (future, api_key, version)
        self._writer.write(_SIZE.pack(len(payload)))
        self._writer.write(payload)
        return future

    async def _read_loop(self) -> None:
        try:
            while True:
                (size,) = _SIZE.unpack(await self._reader.readexactly(4))
                if not 4 <= size <= _MAX_FRAME_BYTES:
                    raise ProtocolDecodeError(f"response frame size {size} is out of range")
                self._dispatch(await self._reader.readexactly(size))
        except asyncio.IncompleteReadError:
            self._fail_pending(BrokerConnectionError(self.address, "connection closed by the broker"))
        except (ConnectionError, OSError) as exc:
            self._fail_pending(BrokerConnectionError(self.address, f"connection lost ({exc})"))
        except ProtocolDecodeError as exc:
            self._fail_pending(BrokerConnectionError(self.address, f"unreadable response: {exc}"))
            self._writer.close()
        except Exception as exc:  # a bug must not leave callers waiting for their timeouts
            log.exception("%s: reader failed", self.address)
            self._fail_pending(BrokerConnectionError(self.address, f"reader failed: {exc!r}"))
            self._writer.close()

    def _dispatch(self, frame: bytes) -> None:
        (correlation_id,) = struct.unpack_from(">i", frame, 0)
        entry = self._pending.pop(correlation_id, None)
        if entry is None:
            # A request we stopped waiting for (timeout); its answer is of no use any more.
            log.debug("%s: dropping response to correlation id %d", self.address, correlation_id)
            return
        future, api_key, version = entry
        if future.done():
            return
        try:
            future.set_result(decode_response(api_key, version, frame))
        except (ProtocolDecodeError, UnicodeDecodeError, ValueError) as exc:
            future.set_exception(
                BrokerConnectionError(self.address, f"undecodable {api_name(api_key)} v{version} response: {exc}")
            )

    def _fail_pending(self, error: BrokerConnectionError) -> None:
        if self._closed_error is None:
            self._closed_error = error
        pending, self._pending = self._pending, {}
        for future, _, _ in pending.values():
            if not future.done():
                future.set_exception(error)
