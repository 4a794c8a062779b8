from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from quart import Quart
from quart.testing import QuartClient

from service.logs import mask_url_passwords

LogLines = Callable[[], list[dict[str, Any]]]
SECRET_URL = "postgresql://user:hunter2@db/app"


def access_lines(log_lines: LogLines, request_id: str) -> list[dict[str, Any]]:
    return [
        line
        for line in log_lines()
        if line["logger"] == "service.access" and line.get("request_id") == request_id
    ]


def slow_request_scope(request_id: str) -> dict[str, Any]:
    """An ASGI scope for `GET /slow?delay=5`, to drive the app without a server."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/slow",
        "raw_path": b"/slow",
        "query_string": b"delay=5",
        "root_path": "",
        "headers": [(b"host", b"localhost"), (b"x-request-id", request_id.encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def test_one_access_line_per_request(client: QuartClient, log_lines: LogLines) -> None:
    response = await client.get(
        "/products",
        query_string={"limit": "5"},
        headers={"User-Agent": "test-agent/1.0", "X-Request-ID": "abc-123"},
        scope_base={"client": ("203.0.113.7", 51234)},
    )

    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "abc-123"
    [line] = access_lines(log_lines, "abc-123")
    assert line["http.method"] == "GET"
    assert line["http.path"] == "/products"  # no query string
    assert line["status_code"] == 200
    assert isinstance(line["duration_ms"], int | float) and line["duration_ms"] >= 0
    assert line["client_ip"] == "203.0.113.7"
    assert line["user_agent"] == "test-agent/1.0"
    assert line["service"] == "test-service"
    assert line["level"] == "INFO"
    assert "limit" not in line["message"]
    assert datetime.fromisoformat(line["timestamp"]).utcoffset() == timedelta(0)


async def test_access_lines_carry_error_statuses(client: QuartClient, log_lines: LogLines) -> None:
    missing = await client.get("/no-such-page", headers={"X-Request-ID": "req-404"})
    failing = await client.get(
        "/error", query_string={"code": "503"}, headers={"X-Request-ID": "req-503"}
    )

    assert (missing.status_code, failing.status_code) == (404, 503)
    [line_404] = access_lines(log_lines, "req-404")
    [line_503] = access_lines(log_lines, "req-503")
    assert (line_404["status_code"], line_404["http.path"]) == (404, "/no-such-page")
    assert (line_503["status_code"], line_503["http.path"]) == (503, "/error")


async def test_a_request_the_client_abandons_is_a_499_not_a_500(
    app: Quart, log_lines: LogLines
) -> None:
    """wrk closing its connections at the end of a run must not look like server errors."""
    scope = slow_request_scope("gone-away")
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client never says more
        return {}

    async def send(message: dict[str, Any]) -> None:
        raise AssertionError(f"nothing may be sent, got {message['type']}")

    request = asyncio.create_task(app(scope, receive, send))
    await asyncio.sleep(0.2)
    request.cancel()  # what a server may do when the connection closes
    with pytest.raises(asyncio.CancelledError):
        await request

    [line] = access_lines(log_lines, "gone-away")
    assert (line["status_code"], line["http.path"], line["level"]) == (499, "/slow", "INFO")


async def test_a_request_whose_client_disconnects_is_a_499_not_a_500(
    app: Quart, log_lines: LogLines
) -> None:
    """What hypercorn does when wrk closes its connections: `http.disconnect`, after
    which Quart drops the request without answering."""
    scope = slow_request_scope("hung-up")
    messages = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.sleep(0.2)
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), timeout=3)

    assert sent == []
    [line] = access_lines(log_lines, "hung-up")
    assert (line["status_code"], line["http.path"]) == (499, "/slow")


async def test_lines_outside_a_request_have_no_request_id(
    client: QuartClient, log_lines: LogLines
) -> None:
    await client.get("/healthz", headers={"X-Request-ID": "before"})

    logging.getLogger("tests.outside").warning("not inside any request")

    [line] = [line for line in log_lines() if line["logger"] == "tests.outside"]
    assert line["message"] == "not inside any request"
    assert "request_id" not in line


@pytest.mark.usefixtures("app")  # the app sets the root logger to INFO
def test_passwords_in_messages_are_masked(log_lines: LogLines) -> None:
    logging.getLogger("x").info("connecting to %s", SECRET_URL)

    [line] = [line for line in log_lines() if line["logger"] == "x"]
    assert line["message"] == "connecting to postgresql://user:***@db/app"
    assert "hunter2" not in json.dumps(line)


@pytest.mark.usefixtures("app")
def test_passwords_in_extra_fields_are_masked(log_lines: LogLines) -> None:
    logging.getLogger("x").info("connecting", extra={"dsn": SECRET_URL, "cache": "redis://:pw@r/0"})

    [line] = [line for line in log_lines() if line["logger"] == "x"]
    assert line["dsn"] == "postgresql://user:***@db/app"
    assert line["cache"] == "redis://:***@r/0"
    assert "hunter2" not in json.dumps(line)


def test_mask_url_passwords() -> None:
    assert mask_url_passwords("redis://:s3cret@cache:6379/0") == "redis://:***@cache:6379/0"
    assert (
        mask_url_passwords("postgresql+asyncpg://app:p:a/ss@db:5432/app")
        == "postgresql+asyncpg://app:***@db:5432/app"
    )
    assert mask_url_passwords("postgresql://app:p@ss@db/app") == "postgresql://app:***@db/app"
    plain_urls = (
        "postgresql://app@db/app",
        "redis://cache:6379/0",
        "http://host:8080/search?mail=a@b",  # an "@" in the query is not a password
        "no url here",
    )
    for plain in plain_urls:
        assert mask_url_passwords(plain) == plain
    assert (
        mask_url_passwords("from postgres://a:one@h1/x to redis://:two@h2/0, done")
        == "from postgres://a:***@h1/x to redis://:***@h2/0, done"
    )
