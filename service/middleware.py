"""Pure ASGI middleware (starlette's shape) wrapped around `app.asgi_app`."""

from __future__ import annotations

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

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
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
            elapsed = time.perf_counter() - started
            duration_ms = round(elapsed * 1000, 3)
            path = scope.get("path", "")
            method = scope.get("method", "")
            if path != "/metrics":
                endpoint = scope.get(ROUTE_TEMPLATE_KEY) or UNMATCHED_ROUTE
                observe_request(method, endpoint, status, self.environment, elapsed)
            client = scope.get("client")
            access_logger.log(
                logging.DEBUG if path in _QUIET_PATHS else logging.INFO,
                "%s %s %s",
                method,
                path,
                status,
                extra={
                    "http.method": method,
                    "http.path": path,
                    "status_code": status,
                    "duration_ms": duration_ms,
                    "client_ip": client[0] if client else None,
                    "user_agent": _header(scope, b"user-agent"),
                },
            )
            request_id_var.reset(token)
