"""A tiny asyncio HTTP/1.1 server for ``/metrics``, ``/healthz`` and ``/readyz``.

Prometheus, Kubernetes probes and docker health checks only ever send small GET requests, so a full HTTP
framework would be dead weight in the broker's event loop.  This server reads one request head (bounded to
``MAX_REQUEST_HEAD_BYTES``, with a read timeout), answers it and closes the connection:

* ``GET /metrics``: the registry in Prometheus' text exposition format (200);
* ``GET /healthz``: 200 while the process runs (liveness);
* ``GET /readyz``: 200 once ``is_ready()`` says the broker serves clients, else 503 (readiness);
* anything else: 404, or 405 for a method other than GET/HEAD, 400/431 for a malformed or huge request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST

log = logging.getLogger("cluster.observability.http")

MAX_REQUEST_HEAD_BYTES = 8192
READ_TIMEOUT_S = 5.0
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
            503: "Service Unavailable"}


class MetricsHttpServer:
    def __init__(self, render_metrics: Callable[[], bytes], is_ready: Callable[[], bool]) -> None:
        self._render_metrics = render_metrics
        self._is_ready = is_ready
        self._server: asyncio.AbstractServer | None = None
        self.host = ""
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._handle, host, port, limit=MAX_REQUEST_HEAD_BYTES)
        self.host = host or "0.0.0.0"
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, content_type, body, head_only = await self._respond(reader)
            _write_response(writer, status, content_type, body, head_only)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _respond(self, reader: asyncio.StreamReader) -> tuple[int, str, bytes, bool]:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
        except asyncio.LimitOverrunError:
            return _text(431, "request head too large")
        except TimeoutError:
            return _text(408, "timed out reading the request")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise
            return _text(400, "incomplete request")
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return _text(400, "malformed request line")
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            return _text(405, "only GET and HEAD")
        head_only = method == b"HEAD"
        if target == b"/metrics":
            try:
                body = self._render_metrics()
            except Exception:  # noqa: BLE001 - a broken collector must not kill the endpoint
                log.exception("rendering metrics failed")
                return (*_text(500, "rendering metrics failed")[:3], head_only)
            return 200, CONTENT_TYPE_LATEST, body, head_only
        if target == b"/healthz":
            return (*_text(200, "ok")[:3], head_only)
        if target == b"/readyz":
            ready = self._is_ready()
            return (*_text(200 if ready else 503, "ready" if ready else "not ready")[:3], head_only)
        return (*_text(404, "not found")[:3], head_only)


def _text(status: int, message: str) -> tuple[int, str, bytes, bool]:
    return status, "text/plain; charset=utf-8", (message + "\n").encode(), False


def _write_response(writer: asyncio.StreamWriter, status: int, content_type: str, body: bytes,
                    head_only: bool) -> None:
    head = (f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode("ascii")
    writer.write(head if head_only else head + body)
