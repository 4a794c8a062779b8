from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg
from quart import Quart
from quart.testing import QuartClient
from sqlalchemy import make_url
from werkzeug.wrappers import Response

from service.app import create_app
from tests.conftest import TestServers, make_settings


def closed_port() -> int:
    """A local port nothing listens on (bound, read, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@asynccontextmanager
async def serving(**overrides: Any) -> AsyncIterator[Quart]:
    """An app of its own, with its lifespan, on the test settings changed by `overrides`."""
    application = create_app(make_settings(**overrides))
    async with application.test_app():
        yield application


@asynccontextmanager
async def black_hole() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never writes a byte; yields its port."""
    writers: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.read()  # until the client gives up; never answers
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


async def timed_get(client: QuartClient, path: str) -> tuple[Response, float]:
    started = time.monotonic()
    response = await client.get(path)
    return response, time.monotonic() - started


async def assert_error_shape(response: Response, status: int) -> None:
    assert response.status_code == status
    error = (await response.get_json())["error"]
    assert error["status"] == status
    assert isinstance(error["message"], str) and error["message"]
    assert error["request_id"] == response.headers["X-Request-ID"]


async def test_health_reports_the_database_connected(client: QuartClient) -> None:
    response = await client.get("/health")

    assert response.status_code == 200
    body = await response.get_json()
    assert body == {
        "status": "UP",
        "service": "test-service",
        "database": "connected",
        "timestamp": body["timestamp"],
    }
    assert datetime.fromisoformat(body["timestamp"]).tzinfo is not None


async def test_liveness_and_readiness(client: QuartClient) -> None:
    liveness = await client.get("/healthz")
    readiness = await client.get("/readyz")

    assert liveness.status_code == 200
    assert await liveness.get_json() == {"status": "ok"}
    assert readiness.status_code == 200
    assert await readiness.get_json() == {
        "status": "ready",
        "checks": {"database": "ok", "schema": "ok", "redis": "ok"},
    }


async def test_database_down_is_a_quick_503() -> None:
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/nope"
    async with serving(database_url=url) as down_app:
        client = down_app.test_client()

        health, elapsed = await timed_get(client, "/health")
        assert health.status_code == 503
        body = await health.get_json()
        assert body["status"] == "DOWN" and body["database"] == "disconnected"
        assert body["service"] == "test-service"
        assert elapsed < 2.0

        readiness = await client.get("/readyz")
        assert readiness.status_code == 503
        checks = (await readiness.get_json())["checks"]
        assert checks["database"] == "failing" and checks["schema"] == "not checked"

        liveness = await client.get("/healthz")
        assert liveness.status_code == 200

        products, elapsed = await timed_get(client, "/products")
        await assert_error_shape(products, 503)
        assert elapsed < 2.0

        started = time.monotonic()
        items = await client.post("/items", json={"name": "lamp", "quantity": 1, "price": 2.5})
        await assert_error_shape(items, 503)
        assert time.monotonic() - started < 2.0


async def test_black_holed_database_is_a_503_within_the_timeouts() -> None:
    async with black_hole() as port:
        url = f"postgresql://postgres@127.0.0.1:{port}/nope"
        async with serving(database_url=url) as hole_app:
            client = hole_app.test_client()

            health, elapsed = await timed_get(client, "/health")
            assert health.status_code == 503
            assert (await health.get_json())["database"] == "disconnected"
            assert elapsed < 2.0

            products, elapsed = await timed_get(client, "/products")
            await assert_error_shape(products, 503)
            assert elapsed < 3.5  # DB_CONNECT_TIMEOUT is 2 s


async def test_redis_down_is_reported_by_readiness_without_failing_it() -> None:
    # Without Redis only exports stop: the instance still serves, so it stays in rotation.
    async with serving(redis_url=f"redis://127.0.0.1:{closed_port()}/0") as down_app:
        client = down_app.test_client()

        readiness = await client.get("/readyz")
        assert readiness.status_code == 200
        assert await readiness.get_json() == {
            "status": "ready",
            "checks": {"database": "ok", "schema": "ok", "redis": "failing"},
        }

        health = await client.get("/health")
        assert health.status_code == 200
        assert (await health.get_json())["database"] == "connected"


async def test_readiness_without_redis_configured() -> None:
    async with serving(redis_url=None) as no_redis_app:
        readiness = await no_redis_app.test_client().get("/readyz")

    assert readiness.status_code == 200
    assert await readiness.get_json() == {
        "status": "ready",
        "checks": {"database": "ok", "schema": "ok", "redis": "not configured"},
    }


async def test_database_refusing_connections_is_a_503_not_a_500() -> None:
    """PostgreSQL's "too many connections" (SQLSTATE 53300) is an outage for the client."""
    role = f"no_slots_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(TestServers.admin_url.replace("+asyncpg", ""))
    try:
        await admin.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 0')
        url = make_url(TestServers.database_url).set(username=role, password=None)
        async with serving(database_url=url.render_as_string(hide_password=False)) as full_app:
            client = full_app.test_client()
            products = await client.get("/products")
            await assert_error_shape(products, 503)
            created = await client.post(
                "/products", json={"name": "Lamp", "price": 1.0, "category": "Home"}
            )
            await assert_error_shape(created, 503)
    finally:
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()
