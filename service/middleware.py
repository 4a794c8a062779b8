"""Pure ASGI middleware (starlette's shape) wrapped around `app.asgi_app`."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from service.logs import request_id_var
from service.metrics import UNMATCHED_ROUTE, observe_request
from service.trace_context import current_traceparent

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access_logger = logging.getLogger("service.access")

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
# Probes hit these every few seconds; their access lines go to DEBUG.
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# Set by the app once routing has matched (see app.py); the metrics' `endpoint` label.
ROUTE_TEMPLATE_KEY = "route_template"
CLIENT_CLOSED_REQUEST = 499
# Set by a route whose body may take long (a download): the longest one body message may
# wait for the client to take it (hypercorn's send blocks while the socket is full).
SEND_IDLE_TIMEOUT_KEY = "send_idle_timeout"
_HEADERS_SET_HERE = frozenset({b"x-request-id", b"x-content-type-options"})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def choose_request_id(incoming: str | None) -> str:
    """The client's id when it is sane, else a new UUID4."""
    if incoming is not None and _SANE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return str(uuid.uuid4())


class RequestContextMiddleware:
    """Per request: the request id (logs and response), `traceparent` and
    `X-Content-Type-Options: nosniff` on the response, one access line, and the HTTP
    metrics. Runs inside the OpenTelemetry server span.
    """

    def __init__(self, app: ASGIApp, environment: str) -> None:
        self.app = app
        self.environment = environment

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = choose_request_id(_header(scope, b"x-request-id"))
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        responded = False
        # The body's end (`more_body` false) is watched, so that a cut body is told from a
        # complete one: a check and an addition per message on the hot path.
        body_done = idle_expired = False
        bytes_sent = 0
        idle_timeout: float | None = None

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, responded, body_done, idle_expired, bytes_sent, idle_timeout
            if message["type"] == "http.response.body":
                if idle_timeout is None:
                    await send(message)
                else:
                    try:
                        async with asyncio.timeout(idle_timeout):
                            await send(message)
                    except TimeoutError:
                        # Quart takes a TimeoutError out of sending as the end of the
                        # response: the handler ends and hypercorn closes the connection.
                        idle_expired = True
                        raise
                bytes_sent += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                return
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
                idle_timeout = scope.get(SEND_IDLE_TIMEOUT_KEY)
                headers = [
                    (key, value)
                    for key, value in message.get("headers", [])
                    if key.lower() not in _HEADERS_SET_HERE
                ]
                headers.append((b"x-request-id", request_id.encode("ascii")))
                # Browsers take every response as the type it declares: a JSON error is
                # never run as a script or shown as HTML. (The page adds its own policy.)
                headers.append((b"x-content-type-options", b"nosniff"))
                traceparent = current_traceparent()
                if traceparent is not None:
                    headers.append((b"traceparent", traceparent.encode("ascii")))
                message = {**message, "headers": headers}
            await send(message)

        crashed = False
        try:
            await self.app(scope, receive, send_with_request_id)
        except Exception:
            crashed = True
            raise
        finally:
            # No answer and no error: the client went away (Quart dropped the request on
            # `http.disconnect`, or the server cancelled it). nginx's 499, not our 500.
            if not responded and not crashed:
                status = CLIENT_CLOSED_REQUEST
            sent_status = status
            cut = responded and not body_done
            if cut:
                # Headers went out, the body did not end: the client went away, stopped
                # reading (SEND_IDLE_TIMEOUT_KEY), the server shut down, or the body
                # failed. Counted as 499 (the client's side) or 500, never as a success.
                status = 500 if crashed else CLIENT_CLOSED_REQUEST
            elapsed = time.perf_counter() - started
            duration_ms = round(elapsed * 1000, 3)
            path = scope.get("path", "")
            method = scope.get("method", "")
            if path != "/metrics":
                endpoint = scope.get(ROUTE_TEMPLATE_KEY) or UNMATCHED_ROUTE
                observe_request(method, endpoint, status, self.environment, elapsed)
            client = scope.get("client")
            extra = {
                "http.method": method,
                "http.path": path,
                "status_code": status,
                "duration_ms": duration_ms,
                "client_ip": client[0] if client else None,
                "user_agent": _header(scope, b"user-agent"),
            }
            if cut or idle_timeout is not None:  # downloads say how much went out
                extra.update(body_complete=not cut, bytes_sent=bytes_sent)
            if cut:
                extra["response_status"] = sent_status
                access_logger.info(
                    "%s %s %s (%s sent, body cut after %d bytes%s)",
                    method,
                    path,
                    status,
                    sent_status,
                    bytes_sent,
                    ": the client stopped reading" if idle_expired else "",
                    extra=extra,
                )
            else:
                access_logger.log(
                    logging.DEBUG if path in _QUIET_PATHS else logging.INFO,
                    "%s %s %s",
                    method,
                    path,
                    status,
                    extra=extra,
                )
            request_id_var.reset(token)
