"""The HTTP edge for a server with no proxy in front (issue 14, section 4).

Two layers, because two of the gaps sit below ASGI:

- Connection level, inside hypercorn (`install`, called in every worker before it serves):
  a deadline for the request head (slowloris), counted and logged, and the cleartext HTTP/2
  paths (`Upgrade: h2c`, the prior-knowledge preface) refused unless H2C_ENABLED. hypercorn
  0.18 has no option for either: its `read_timeout` limits each read, so a client sending a
  byte every few seconds is never cut, while a silent client is cut even when it is only
  waiting for a slow answer or idling between keep-alive requests. So its connection class
  is subclassed and put where its worker looks it up.
- ASGI level (`HTTPEdgeMiddleware`): requests with both `Content-Length` and
  `Transfer-Encoding` are refused and their connection closed, and any answer sent before
  the request body was read to its end says `Connection: close`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import h11
import orjson
from hypercorn.asyncio.tcp_server import MAX_RECV, TCPServer
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.protocol.h11 import H11Protocol

from service.errors import error_payload
from service.logs import request_id_var

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EdgeSettings:
    head_timeout: float  # HTTP_READ_TIMEOUT
    h2c_enabled: bool  # H2C_ENABLED


_settings = EdgeSettings(head_timeout=20.0, h2c_enabled=False)


class EdgeTCPServer(TCPServer):
    """hypercorn's connection, plus a deadline for each request head.

    The first request's head must be complete within `head_timeout` of the connection
    opening; a later one's within `head_timeout` of its first byte (before that byte the
    connection is idle, which KEEP_ALIVE_TIMEOUT governs as before). Once a head is in,
    reads wait as long as the request runs: its body has Quart's BODY_TIMEOUT.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: float | None = self.loop.time() + _settings.head_timeout
        self._idle = True  # between requests: no head has started yet

    async def protocol_send(self, event: Event) -> None:
        if isinstance(event, Updated):
            # idle=False: a request head is complete; idle=True: the connection is recycled.
            self._idle = event.idle
            self._head_deadline = None
        await super().protocol_send(event)

    async def _read_data(self) -> None:
        # hypercorn's loop (asyncio/tcp_server.py, 0.18) with the deadline in the wait.
        while not self.reader.at_eof():
            timeout = None
            if self._head_deadline is not None:
                timeout = max(self._head_deadline - self.loop.time(), 0)
            try:
                data = await asyncio.wait_for(self.reader.read(MAX_RECV), timeout)
            except TimeoutError:
                self._count_head_timeout()
                await self.idle_task.stop()  # else the socket stays open until it ends
                break
            except (ConnectionError, OSError):  # ssl.SSLError is an OSError
                break
            if self._idle and self._head_deadline is None and data:
                self._head_deadline = self.loop.time() + _settings.head_timeout
            try:
                await self.protocol.handle(RawData(data))
            except CloseConnection:
                await self.idle_task.stop()
                break
        await self.protocol.handle(Closed())

    def _count_head_timeout(self) -> None:
        # Imported here: `serve`'s supervisor imports this module for its workers, and in
        # multiprocess mode a metric module imported there would publish a stray process.
        from service.metrics import HTTP_HEAD_TIMEOUTS

        HTTP_HEAD_TIMEOUTS.inc()
        peer = self.writer.get_extra_info("peername")
        logger.warning(
            "request head not complete within %s s: connection closed",
            _settings.head_timeout,
            extra={"client_ip": peer[0] if peer else None},
        )


class CloseConnection(Exception):
    """Raised out of the protocol once it has answered: the connection must close."""


class EdgeH11Protocol(H11Protocol):
    """HTTP/1 without the switch to cleartext HTTP/2 unless H2C_ENABLED.

    `Upgrade: h2c` is then ignored, as RFC 9110 lets a server do, and the request answered
    over HTTP/1.1; the prior-knowledge preface (`PRI * HTTP/2.0`), like any other version
    but 1.x, gets a 505 and the connection closed.
    """

    async def _check_protocol(self, event: h11.Request) -> None:
        if _settings.h2c_enabled:
            await super()._check_protocol(event)
        elif not event.http_version.startswith(b"1."):
            await self._send_error_response(505)
            raise CloseConnection()


def install(settings: EdgeSettings) -> None:
    """Use the classes above in this process's hypercorn. Call before the worker serves.

    hypercorn's worker looks its connection class up in `hypercorn.asyncio.run` and the
    HTTP/1 protocol class in `hypercorn.protocol` at each connection; nothing else of its
    behaviour changes. tests/test_http_edge.py fails if a hypercorn upgrade moves them.
    """
    global _settings
    import hypercorn.asyncio.run
    import hypercorn.protocol

    _settings = settings
    hypercorn.asyncio.run.TCPServer = EdgeTCPServer  # type: ignore[misc]
    hypercorn.protocol.H11Protocol = EdgeH11Protocol  # type: ignore[misc]


def run_worker(worker: Callable[..., None], settings: EdgeSettings, **kwargs: Any) -> None:
    """A spawned worker's entry point: install, then run hypercorn's worker function."""
    install(settings)
    worker(**kwargs)


class HTTPEdgeMiddleware:
    """Request framing the server must not guess at, and honest connection closes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # HTTP/2 frames its bodies itself, and forbids a Connection header.
        if scope["type"] != "http" or not scope.get("http_version", "1.1").startswith("1"):
            await self.app(scope, receive, send)
            return
        content_length = transfer_encoding = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                content_length = value
            elif name == b"transfer-encoding":
                transfer_encoding = value
        if content_length is not None and transfer_encoding is not None:
            # RFC 9112 6.3: a proxy and this server could disagree on where the body ends,
            # so a second request hidden in it could run. Refuse, and never read on.
            await _refuse_ambiguous_framing(scope, send)
            return

        if transfer_encoding is None and content_length in (None, b"0"):
            # No body (every GET): nothing can be left unread, so no wrapping to pay for.
            await self.app(scope, receive, send)
            return
        body_read = False

        async def receive_tracking() -> Message:
            nonlocal body_read
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_read = True
            return message

        async def send_with_close(message: Message) -> None:
            if message["type"] == "http.response.start" and not body_read:
                # The server closes a connection whose request body it has not read (the
                # rest would be taken for the next request): say so, so that a keep-alive
                # client does not send its next request into the closed socket.
                message = {**message, "headers": _with_connection_close(message["headers"])}
            await send(message)

        await self.app(scope, receive_tracking, send_with_close)


def _with_connection_close(headers: Any) -> list[tuple[bytes, bytes]]:
    kept = [(name, value) for name, value in headers if name.lower() != b"connection"]
    return [*kept, (b"connection", b"close")]


async def _refuse_ambiguous_framing(scope: Scope, send: Send) -> None:
    path = scope.get("path", "")
    payload = error_payload(
        400,
        "a request may not carry both Content-Length and Transfer-Encoding",
        realworld=path == "/api" or path.startswith("/api/"),
        request_id=request_id_var.get(),
    )
    body = orjson.dumps(payload) + b"\n"
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 400, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
