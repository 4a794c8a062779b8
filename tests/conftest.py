"""Test set-up: a fresh PostgreSQL database and Redis db per run, the app with its lifespan.

TEST_DATABASE_URL / TEST_REDIS_URL point at the servers (default: the local ones).
Each run creates its own database `test_<random>` and claims an empty Redis db,
and removes both at the end, so two runs never collide and nothing is left behind.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import random
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import asyncpg
import pytest
import redis
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from quart import Quart
from quart.testing import QuartClient
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from service.__main__ import migrate
from service.app import create_app
from service.config import Settings, to_async_database_url
from service.logs import ServiceJsonFormatter
from service.models import metadata
from service.telemetry import add_span_processor

# `sqlite_env` and `start_server`: a real server process for the tests that need one.
pytest_plugins = ["tests.processes"]

DEFAULT_TEST_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/0"
START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
START_REDIS = (
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" '
    "--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log"
)
REDIS_CLAIM_KEY = "__test_run_claim__"


class TestServers:
    """What this run created; filled in by pytest_sessionstart."""

    database_url: str = ""  # postgresql+asyncpg://.../test_<random>
    admin_url: str = ""
    database_name: str = ""
    redis_url: str = ""


async def _create_database(admin_url: str, name: str) -> None:
    connection = await asyncpg.connect(admin_url, timeout=5)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def _drop_database(admin_url: str, name: str) -> None:
    connection = await asyncpg.connect(admin_url, timeout=5)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def _claim_redis_db(base_url: str, run_id: str) -> str:
    """An empty Redis db (1-15) claimed for this run with a marker key."""
    base = redis.Redis.from_url(base_url, socket_connect_timeout=3)
    base.ping()
    base.close()
    for db in random.sample(range(1, 16), 15):
        url = make_url(base_url.replace("redis://", "postgresql://", 1))  # reuse the URL parser
        candidate = f"redis://{url.host or '127.0.0.1'}:{url.port or 6379}/{db}"
        if url.password:
            candidate = f"redis://:{url.password}@{url.host}:{url.port or 6379}/{db}"
        client = redis.Redis.from_url(candidate)
        try:
            if client.set(REDIS_CLAIM_KEY, run_id, nx=True, ex=6 * 3600) and client.dbsize() == 1:
                return candidate
            if client.get(REDIS_CLAIM_KEY) == run_id.encode():
                client.delete(REDIS_CLAIM_KEY)
        finally:
            client.close()
    raise pytest.UsageError("every Redis db 1-15 is in use by other test runs")


def pytest_sessionstart(session: pytest.Session) -> None:
    run_id = uuid.uuid4().hex[:12]
    admin = os.environ.get("TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)
    redis_base = os.environ.get("TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL)
    admin_plain = make_url(to_async_database_url(admin)).set(drivername="postgresql")
    TestServers.admin_url = admin_plain.render_as_string(hide_password=False)
    TestServers.database_name = f"test_{run_id}"
    try:
        asyncio.run(_create_database(TestServers.admin_url, TestServers.database_name))
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        pytest.exit(
            f"PostgreSQL is not reachable at {admin_plain!r} ({error}). Start it with "
            f"`{START_POSTGRES}` or set TEST_DATABASE_URL.",
            returncode=3,
        )
    TestServers.database_url = (
        make_url(to_async_database_url(admin))
        .set(database=TestServers.database_name)
        .render_as_string(hide_password=False)
    )
    try:
        TestServers.redis_url = _claim_redis_db(redis_base, run_id)
    except redis.RedisError as error:
        asyncio.run(_drop_database(TestServers.admin_url, TestServers.database_name))
        pytest.exit(
            f"Redis is not reachable at {redis_base} ({error}). Start it with "
            f"`{START_REDIS}` or set TEST_REDIS_URL.",
            returncode=3,
        )
    migrate(make_settings())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if TestServers.database_name:
        asyncio.run(_drop_database(TestServers.admin_url, TestServers.database_name))
    if TestServers.redis_url:
        client = redis.Redis.from_url(TestServers.redis_url)
        client.flushdb()
        client.close()


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": TestServers.database_url,
        "redis_url": TestServers.redis_url,
        "app_env": "test",
        "log_level": "INFO",
        "service_name": "test-service",
        "slow_endpoint_delay": 0.05,
        # What the test client (localhost) and local servers (127.0.0.1) are called: the
        # Host check runs in every test, and production-mode apps need a list anyway.
        "allowed_hosts": "localhost,127.0.0.1",
        # The suite registers and logs in many users from one client: limits on, but far
        # above what it does (tests/test_ratelimit.py makes apps with tight ones).
        "rate_limit_login_per_ip": "100000/minute",
        "rate_limit_login_per_account": "100000/minute",
        "rate_limit_login_per_account_and_ip": "100000/minute",
        "rate_limit_register_per_ip": "100000/minute",
        "rate_limit_register_per_account": "100000/minute",
        "rate_limit_email_change_per_ip": "100000/minute",
        "rate_limit_email_change_per_user": "100000/minute",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return make_settings()


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[Quart]:
    application = create_app(settings)
    async with application.test_app():
        yield application


@pytest.fixture(scope="session")
def span_store(app: Quart) -> InMemorySpanExporter:
    """Every span the test process finishes (the app has installed the tracer provider)."""
    exporter = InMemorySpanExporter()
    add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def spans(span_store: InMemorySpanExporter) -> InMemorySpanExporter:
    span_store.clear()
    return span_store


async def empty_tables(app: Quart) -> None:
    names = ", ".join(f'"{table.name}"' for table in metadata.sorted_tables)
    async with app.extensions["database"].engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture
async def clean_tables(app: Quart) -> AsyncIterator[None]:
    yield
    await empty_tables(app)


@pytest.fixture
async def client(app: Quart, clean_tables: None) -> QuartClient:
    return app.test_client()


@pytest.fixture
async def session(app: Quart, clean_tables: None) -> AsyncIterator[AsyncSession]:
    """A session of the test's own, to arrange rows and to check what the app wrote."""
    async with app.extensions["database"].sessionmaker() as db_session:
        yield db_session


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The JSON log lines written during the test, parsed."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(ServiceJsonFormatter("test-service"))
    root = logging.getLogger()
    root.addHandler(handler)

    def read() -> list[dict[str, Any]]:
        return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]

    try:
        yield read
    finally:
        root.removeHandler(handler)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Subprocesses started by the test; killed afterwards if still running."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
