"""The Kafka client listener: size-prefixed frames in, responses out in request order.

Kafka frames every request and response as ``int32 size`` + payload.  This module only does framing and flow
control; what a frame means is the business of a ``RequestDispatcher`` (the broker).  It is an
``asyncio.BufferedProtocol`` that receives straight into a preallocated buffer, because per-frame copying
decides the throughput of a Python server (reference/performance.md §5: ~2x over StreamReader).

Rules kept here:
  * A size prefix above ``socket.request.max.bytes`` (or negative) closes the connection before anything is
    allocated for it, with a log line naming the peer and the size.
  * Requests are dispatched as they arrive, in order, so handlers may overlap (a Produce can append while an
    earlier one waits for fsync), but responses leave strictly in request order, as Kafka clients expect.
  * Backpressure: reading pauses while ``max_in_flight`` requests are unanswered or while the transport's
    write buffer is above its high-water mark, so a slow client cannot make the broker buffer without bound.
  * Each connection knows the name of the listener it arrived on (``listener_name``, e.g. INTERNAL or
    EXTERNAL), because Kafka answers Metadata and FindCoordinator with every broker's endpoint *for that
    listener*: a client that came in through the host port must be sent host addresses, not in-network names.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import struct
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

log = logging.getLogger("cluster.transport")

_SIZE = struct.Struct(">i")
_INITIAL_BUFFER_BYTES = 256 * 1024

# A response is a list of byte chunks (written with writelines, no joining), or None for no response.
Response = Sequence[bytes | bytearray | memoryview] | None


class CloseConnection(Exception):
    """Raised by a dispatcher to drop the connection (Kafka closes on unparseable or unsupported requests)."""


class RequestDispatcher(Protocol):
    def dispatch(self, frame: bytes, connection: KafkaConnection) -> Response | Awaitable[Response]:
        """Handles one request frame (without its size prefix).

        Returns the response chunks (size prefix not included) directly, or an awaitable of them.
        None means "send nothing" (Produce with acks=0).  Raise CloseConnection to drop the peer.
        """


class KafkaConnection(asyncio.BufferedProtocol):
    """One client connection: framing, in-order responses and flow control."""

    def __init__(self, dispatcher: RequestDispatcher, max_request_bytes: int, max_in_flight: int,
                 on_close: Callable[[KafkaConnection], None] | None = None,
                 listener_name: str | None = None) -> None:
        self.listener_name = listener_name
        self._dispatcher = dispatcher
        self._max_request_bytes = max_request_bytes
        self._max_in_flight = max_in_flight
        self._on_close = on_close
        self._buffer = bytearray(_INITIAL_BUFFER_BYTES)
        self._view = memoryview(self._buffer)
        self._start = 0  # first unconsumed byte
        self._end = 0  # one past the last received byte
        self._pending: collections.deque[list] = collections.deque()  # [response or None, done flag]
        self._transport: asyncio.Transport | None = None
        self._reading_paused = False
        self._writing_paused = False
        self._closed = False
        self._consuming = False  # re-entrancy guard: resuming reads from inside a dispatch
        self.peer = "?"

    # asyncio.BaseProtocol ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._pending.clear()
        if self._on_close is not None:
            self._on_close(self)

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._update_reading()

    # asyncio.BufferedProtocol -----------------------------------------------------------------------
    def get_buffer(self, sizehint: int) -> memoryview:
        if len(self._buffer) - self._end < 16384:
            self._make_room(max(sizehint, 65536))
        return self._view[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        self._end += nbytes
        try:
            self._consume_frames()
        except CloseConnection as exc:
            self.close(str(exc))

    def eof_received(self) -> bool:
        return False

    # framing ----------------------------------------------------------------------------------------
    def _consume_frames(self) -> None:
        if self._consuming:
            return
        self._consuming = True
        try:
            self._consume_buffered_frames()
        finally:
            self._consuming = False

    def _consume_buffered_frames(self) -> None:
        while (
            not self._closed
            and len(self._pending) < self._max_in_flight
            and self._end - self._start >= 4
        ):
            (size,) = _SIZE.unpack_from(self._buffer, self._start)
            if size < 0 or size > self._max_request_bytes:
                raise CloseConnection(
                    f"request size {size} is outside [0, socket.request.max.bytes={self._max_request_bytes}]"
                )
            frame_end = self._start + 4 + size
            if frame_end > self._end:
                if 4 + size > len(self._buffer):
                    self._make_room(4 + size)
                return
            frame = bytes(self._view[self._start + 4 : frame_end])
            self._start = frame_end
            self._dispatch(frame)
        if self._start == self._end:
            self._start = self._end = 0
            if len(self._buffer) > 4 * _INITIAL_BUFFER_BYTES:
                self._resize(_INITIAL_BUFFER_BYTES)  # give back the memory of one large request

    def _make_room(self, needed: int) -> None:
        """Moves unconsumed bytes to the front and grows the buffer so ``needed`` more bytes fit."""
        unconsumed = self._end - self._start
        capacity = max(len(self._buffer), unconsumed + needed)
        if self._start == 0 and capacity == len(self._buffer):
            capacity = len(self._buffer) * 2
        self._resize(capacity)

    def _resize(self, capacity: int) -> None:
        unconsumed = self._end - self._start
        new_buffer = bytearray(capacity)
        new_buffer[:unconsumed] = self._view[self._start : self._end]
        self._view.release()
        self._buffer = new_buffer
        self._view = memoryview(new_buffer)
        self._start, self._end = 0, unconsumed

    # dispatch and in-order responses ------------------------------------------------------------------
    def _dispatch(self, frame: bytes) -> None:
        result = self._dispatcher.dispatch(frame, self)
        slot = [None, False]
        self._pending.append(slot)
        if isinstance(result, Awaitable):
            task = asyncio.ensure_future(result)
            task.add_done_callback(lambda done, slot=slot: self._complete(slot, done))
            self._update_reading()
        else:
            slot[0], slot[1] = result, True
            self._flush_ready()

    def _complete(self, slot: list, task: asyncio.Future) -> None:
        if self._closed:
            return
        if task.cancelled():
            self.close("request handler cancelled")
            return
        exc = task.exception()
        if isinstance(exc, CloseConnection):
            self.close(str(exc))
            return
        if exc is not None:
            log.error("request handler failed for %s; closing the connection", self.peer, exc_info=exc)
            self.close("internal error")
            return
        slot[0], slot[1] = task.result(), True
        self._flush_ready()

    def _flush_ready(self) -> None:
        while self._pending and self._pending[0][1]:
            response = self._pending.popleft()[0]
            if response is not None and self._transport is not None:
                size = sum(len(chunk) for chunk in response)
                self._transport.writelines([_SIZE.pack(size), *response])
        self._update_reading()

    def _update_reading(self) -> None:
        if self._transport is None or self._closed:
            return
        should_pause = self._writing_paused or len(self._pending) >= self._max_in_flight
        if should_pause and not self._reading_paused:
            self._transport.pause_reading()
            self._reading_paused = True
        elif not should_pause and self._reading_paused:
            self._reading_paused = False
            self._transport.resume_reading()
            # Frames already buffered while paused would otherwise wait for the next read.
            try:
                self._consume_frames()
            except CloseConnection as exc:
                self.close(str(exc))

    def close(self, reason: str) -> None:
        if self._closed:
            return
        log.warning("closing connection from %s: %s", self.peer, reason)
        self._closed = True
        if self._transport is not None:
            self._transport.close()


async def start_kafka_server(
    dispatcher: RequestDispatcher, host: str, port: int, max_request_bytes: int, max_in_flight: int = 64,
    listener_name: str | None = None, *, start_serving: bool = True,
) -> tuple[asyncio.AbstractServer, set[KafkaConnection]]:
    """Listens on host:port; returns the server and the live connection set (for shutdown).

    Every connection accepted here carries ``listener_name`` (the NAME of ``NAME://host:port``).  With
    ``start_serving=False`` the port is bound (so it is known and taken) but refuses connections until
    ``server.start_serving()``: a cluster broker registers its port before it lets clients in.
    """
    connections: set[KafkaConnection] = set()
    loop = asyncio.get_running_loop()

    def factory() -> KafkaConnection:
        connection = KafkaConnection(dispatcher, max_request_bytes, max_in_flight, connections.discard,
                                     listener_name)
        connections.add(connection)
        return connection

    server = await loop.create_server(factory, host or None, port, reuse_address=True, backlog=1024,
                                      start_serving=start_serving)
    return server, connections
