"""Readiness on a path of its own, and the database mistakes of a deployment: a missing
database, a schema behind the code, a malformed DATABASE_URL. Each is one clear line (a
command) or a JSON 503 with the cause in the log (a request), never a traceback or a 500."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from quart import Quart
from sqlalchemy import event, make_url

from service.__main__ import PROJECT_ROOT
from service.app import create_app
from tests.conftest import TestServers, make_settings
from tests.processes import free_port, run_command, service_env
from tests.tcp_proxy import TcpProxy

MIGRATE_HINT = "run `python -m service migrate`"
PROBES = ("/readyz", "/health", "/api/health")
SCRIPTS = ScriptDirectory(str(PROJECT_ROOT / "alembic"))
HEAD = SCRIPTS.get_current_head()
assert HEAD is not None
# The revision before the head, whatever the head is today.
PREVIOUS = SCRIPTS.get_revision(HEAD).down_revision
assert isinstance(PREVIOUS, str)


@asynccontextmanager
async def serving(**overrides: Any) -> AsyncIterator[Quart]:
    application = create_app(make_settings(**overrides))
    async with application.test_app():
        yield application


def url_of(database: str) -> str:
    return make_url(TestServers.database_url).set(database=database).render_as_string(False)


@asynccontextmanager
async def scratch_database() -> AsyncIterator[str]:
    """An empty database of this test's own on the test server; yields its name."""
    name = f"{TestServers.database_name}_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(TestServers.admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def migrate_to(database_url: str, revision: str) -> None:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["database_url"] = database_url
    await asyncio.to_thread(command.upgrade, config, revision)


async def execute_in(database_name: str, statement: str) -> None:
    database = await asyncpg.connect(url_of(database_name).replace("+asyncpg", ""))
    try:
        await database.execute(statement)
    finally:
        await database.close()


async def readiness(app: Quart) -> tuple[int, dict[str, Any]]:
    response = await app.test_client().get("/readyz")
    return response.status_code, await response.get_json()


async def assert_json_503(response: Any) -> None:
    assert response.status_code == 503
    assert (await response.get_json())["error"]["message"] == (
        "database unavailable, try again later"
    )


def errors_logged(log_lines: Callable[[], list[dict[str, Any]]]) -> list[str]:
    return [line["message"] for line in log_lines() if line["level"] == "ERROR"]


async def test_readiness_stays_ready_while_requests_hold_every_pooled_connection() -> None:
    """A locked table holds the pool's only connection: the instance is busy, not broken,
    and must stay in the Service (all pods are equally busy: pulling one pulls them all)."""
    async with serving(db_pool_size=1, db_max_overflow=0, db_pool_timeout=0.3) as app:
        client = app.test_client()
        locker = await asyncpg.connect(TestServers.database_url.replace("+asyncpg", ""))
        try:
            async with locker.transaction():
                await locker.execute("LOCK TABLE products IN ACCESS EXCLUSIVE MODE")
                held = asyncio.create_task(client.get("/products"))
                pool = app.extensions["database"].engine.pool
                deadline = time.monotonic() + 5
                while pool.checkedout() < 1:
                    assert time.monotonic() < deadline, "the request never took the connection"
                    await asyncio.sleep(0.01)

                # Exhausted indeed: another request waits DB_POOL_TIMEOUT, then gets a 503.
                await assert_json_503(await client.get("/todos"))
                status, body = await readiness(app)
                health = await client.get("/health")
                dependencies = await client.get("/api/health")
        finally:
            await locker.close()
        assert (await held).status_code == 200  # the lock went with the transaction

    assert (status, body["status"]) == (200, "ready"), body
    assert body["checks"]["database"] == "ok" and body["checks"]["schema"] == "ok"
    assert health.status_code == 200
    assert (await health.get_json())["database"] == "connected"
    assert (await dependencies.get_json())["database"] == "connected"


async def test_probes_that_come_while_a_check_runs_share_it() -> None:
    """However often the probes come, one check at a time: a held alembic_version keeps the
    first check waiting, and the probes that come meanwhile wait for its answer."""
    async with serving(redis_url=None) as app:  # /api/health: no worker to wait for
        statements: list[str] = []
        probe_engine = app.extensions["database_probe"].engine.sync_engine
        event.listen(
            probe_engine, "before_cursor_execute", lambda *args: statements.append(args[2])
        )
        client = app.test_client()
        locker = await asyncpg.connect(TestServers.database_url.replace("+asyncpg", ""))
        try:
            async with locker.transaction():
                await locker.execute("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE")
                probes = [asyncio.create_task(client.get(path)) for path in PROBES * 4]
                await asyncio.sleep(0.5)  # every probe is in (well under the 1.5 s timeout)
        finally:
            await locker.close()
        answers = await asyncio.gather(*probes)

    assert {answer.status_code for answer in answers} == {200}
    assert len(statements) == 1, statements


@pytest.mark.parametrize("mode", ["refuse", "partition"])
async def test_readiness_fails_while_the_database_is_cut_off_and_recovers(mode: str) -> None:
    target = make_url(TestServers.database_url)
    with TcpProxy(target.host or "127.0.0.1", target.port or 5432) as proxy:
        behind_proxy = target.set(host="127.0.0.1", port=proxy.port)
        async with serving(database_url=behind_proxy.render_as_string(False)) as app:
            assert (await readiness(app))[0] == 200

            proxy.cut(mode)  # type: ignore[arg-type]
            started = time.monotonic()
            status, body = await readiness(app)
            elapsed = time.monotonic() - started
            proxy.restore()
            # Ready again by itself, on a fresh connection (after a partition, SQLAlchemy
            # may still be closing the one that was cut off: a probe or two later).
            deadline = time.monotonic() + 6
            while (back := (await readiness(app))[0]) != 200 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)

    assert status == 503 and elapsed < 2.0, (status, elapsed)
    assert body["checks"]["database"] == "failing" and body["checks"]["schema"] == "not checked"
    assert back == 200


async def test_a_schema_behind_the_code_is_not_ready_until_migrated() -> None:
    async with scratch_database() as name:
        await migrate_to(url_of(name), PREVIOUS)
        async with serving(database_url=url_of(name)) as app:
            behind = await readiness(app)
            await migrate_to(url_of(name), "head")
            migrated = await readiness(app)

    assert behind == (
        503,
        {
            "status": "not ready",
            "checks": {"database": "ok", "schema": f"behind ({PREVIOUS} < {HEAD})", "redis": "ok"},
        },
    )
    assert migrated[0] == 200 and migrated[1]["checks"]["schema"] == "ok"


async def test_a_schema_ahead_of_the_code_stays_ready() -> None:
    """A newer release migrated first (a rolling update): the old pods keep serving."""
    async with scratch_database() as name:
        await migrate_to(url_of(name), "head")
        await execute_in(name, "UPDATE alembic_version SET version_num = 'f00d'")
        async with serving(database_url=url_of(name)) as app:
            status, body = await readiness(app)

    assert status == 200
    assert body["checks"]["schema"] == f"ahead (f00d > {HEAD})"


async def test_an_unmigrated_database_is_not_ready_and_requests_are_503s_naming_the_cause(
    log_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    async with scratch_database() as name, serving(database_url=url_of(name)) as app:
        status, body = await readiness(app)
        products = await app.test_client().get("/products")
        created = await app.test_client().post("/todos", json={"task": "water the plants"})

    assert (status, body["checks"]["database"]) == (503, "ok")
    assert body["checks"]["schema"] == f"missing ({MIGRATE_HINT})"
    await assert_json_503(products)
    await assert_json_503(created)
    logged = errors_logged(log_lines)
    assert f'database schema missing (relation "products" does not exist): {MIGRATE_HINT}' in (
        logged
    )
    assert f'database schema missing (relation "todos" does not exist): {MIGRATE_HINT}' in logged
    assert not any("unhandled" in message for message in logged)


async def test_a_column_the_code_expects_but_the_database_lacks_is_a_503_naming_it(
    log_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    """What a release deployed before its migration meets: a column not there yet."""
    async with scratch_database() as name:
        await migrate_to(url_of(name), "head")
        await execute_in(name, "ALTER TABLE products DROP COLUMN category")
        async with serving(database_url=url_of(name)) as app:
            products = await app.test_client().get("/products")

    await assert_json_503(products)
    assert (
        f"database schema behind the code (column products.category does not exist): "
        f"{MIGRATE_HINT}" in errors_logged(log_lines)
    )


async def test_a_missing_database_is_a_503_naming_it(
    log_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    name = f"{TestServers.database_name}_never_created"
    async with serving(database_url=url_of(name)) as app:
        status, body = await readiness(app)
        products = await app.test_client().get("/products")

    assert (status, body["checks"]["database"]) == (503, "failing")
    await assert_json_503(products)
    assert (
        f'database missing (database "{name}" does not exist): create it, then {MIGRATE_HINT}'
        in errors_logged(log_lines)
    )


async def test_an_unmigrated_sqlite_file_is_a_503_naming_the_cause(
    tmp_path: Path, log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    async with serving(database_url=f"sqlite:///{tmp_path / 'empty.db'}") as app:
        status, body = await readiness(app)
        products = await app.test_client().get("/products")

    assert (status, body["checks"]["schema"]) == (503, f"missing ({MIGRATE_HINT})")
    await assert_json_503(products)
    assert f"database schema missing (no such table: products): {MIGRATE_HINT}" in (
        errors_logged(log_lines)
    )


def test_migrate_against_a_missing_database_says_how_to_create_it_in_one_line() -> None:
    name = f"{TestServers.database_name}_not_there"
    url = make_url(url_of(name)).set(password="pw-never-shown")
    result = run_command(
        "migrate", service_env(DATABASE_URL=url.render_as_string(hide_password=False))
    )

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f'migrate: database "{name}" does not exist on the PostgreSQL server at '
        f"{url.host}:{url.port}: create it (`createdb -h {url.host} -p {url.port} "
        f"-U {url.username} {name}`), then {MIGRATE_HINT}"
    ]
    assert "pw-never-shown" not in result.stdout + result.stderr


def test_migrate_against_an_unreachable_server_is_one_line() -> None:
    port = free_port()  # nothing listens there
    result = run_command(
        "migrate", service_env(DATABASE_URL=f"postgresql://app:pw@127.0.0.1:{port}/app")
    )

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"migrate: cannot reach the PostgreSQL server at 127.0.0.1:{port}")


@pytest.mark.parametrize(
    "url", ["postgresql://app:pw-never-shown@db:notaport/app", "nonsense", "mysql://a@db/app"]
)
def test_a_malformed_database_url_stops_serve_with_one_line(url: str) -> None:
    result = run_command("serve", service_env(DATABASE_URL=url, PORT=str(free_port())))

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("configuration error: DATABASE_URL: ")
    assert "pw-never-shown" not in result.stderr
