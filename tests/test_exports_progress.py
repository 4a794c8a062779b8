"""Progress a person can see: rows written of rows total while an export runs, and a notice
when an export waits for a worker that is not there.

An export is held at a chosen chunk by a test trigger on `export_chunks` that waits on an
advisory lock the test holds: the state in between is seen without timing guesses.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from arq.worker import Worker
from quart import Quart
from quart.testing import QuartClient
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.app import create_app
from service.db import utc_now
from service.exports import queries
from service.exports.models import Export
from service.exports.status import NO_WORKER_NOTICE
from service.queue import HEALTH_CHECK_KEY
from tests import test_exports_worker
from tests.conftest import TestServers, make_settings
from tests.test_exports_worker import insert_todos, start_export, wait_for_status

run_worker = test_exports_worker.run_worker  # a fixture
HOLD_LOCK = 815_015  # the advisory lock key the trigger waits on


@asynccontextmanager
async def export_chunks_trigger(app: Quart, plpgsql: str) -> AsyncIterator[None]:
    """Run `plpgsql` before each insert into export_chunks while inside (test-only DDL)."""
    engine = app.extensions["database"].engine
    async with engine.begin() as ddl:
        await ddl.execute(
            text(
                "CREATE OR REPLACE FUNCTION test_export_chunk() RETURNS trigger "
                f"LANGUAGE plpgsql AS $$ BEGIN {plpgsql} RETURN NEW; END $$"
            )
        )
        await ddl.execute(
            text(
                "CREATE TRIGGER test_export_chunk BEFORE INSERT ON export_chunks "
                "FOR EACH ROW EXECUTE FUNCTION test_export_chunk()"
            )
        )
    try:
        yield
    finally:
        async with engine.begin() as ddl:
            await ddl.execute(text("DROP TRIGGER IF EXISTS test_export_chunk ON export_chunks"))
            await ddl.execute(text("DROP FUNCTION IF EXISTS test_export_chunk()"))


@asynccontextmanager
async def hold_export_at_chunk(app: Quart, seq: int) -> AsyncIterator[None]:
    """Exports stop before writing chunk `seq` until the block ends: the trigger waits on
    an advisory lock the test holds."""
    wait_for_test = (
        f"IF NEW.seq = {int(seq)} THEN PERFORM pg_advisory_lock_shared({HOLD_LOCK}); "
        f"PERFORM pg_advisory_unlock_shared({HOLD_LOCK}); END IF;"
    )
    # The lock is let go before the trigger is dropped: DROP TRIGGER waits for a held insert.
    async with (
        export_chunks_trigger(app, wait_for_test),
        app.extensions["database"].engine.connect() as holder,
    ):
        await holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": HOLD_LOCK})
        await holder.commit()
        try:
            yield
        finally:
            await holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": HOLD_LOCK})
            await holder.commit()


async def wait_for(
    client: QuartClient, export_id: str, check: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        body = await (await client.get(f"/exports/{export_id}")).get_json()
        if check(body):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"export {export_id} never got there: {body}")


@asynccontextmanager
async def app_with(**overrides: Any) -> AsyncIterator[Quart]:
    other = create_app(make_settings(**overrides))
    async with other.test_app():
        yield other


async def test_progress_while_an_export_runs(app: Quart, session: AsyncSession) -> None:
    await insert_todos(session, 10)  # batches of 3: chunks 0..3
    async with app_with(redis_url=None, export_batch_size=3) as in_process:
        client = in_process.test_client()
        async with hold_export_at_chunk(app, seq=2):
            export_id = await start_export(client)
            held = await wait_for(client, export_id, lambda body: body["rows_written"] == 6)
            await insert_todos(session, 2)  # after the claim: exported, not in the total
            await asyncio.sleep(0.3)  # it stays held: nothing beyond chunk 1 is written
            again = await (await client.get(f"/exports/{export_id}")).get_json()
        done = await wait_for_status(client, export_id, "complete")

    assert (held["status"], held["rows_written"], held["rows_total"]) == ("in_progress", 6, 10)
    assert held["rows"] is None and "download_url" not in held and "notice" not in held
    assert (again["status"], again["rows_written"], again["rows_total"]) == ("in_progress", 6, 10)
    # Complete: the three agree, and count what the file holds.
    assert done["rows"] == done["rows_written"] == done["rows_total"] == 12
    stored = await session.get(Export, export_id)
    assert stored is not None and stored.rows_written == stored.rows_total == 12


async def test_a_queued_export_shows_no_progress_yet(app: Quart, session: AsyncSession) -> None:
    export = await queries.create_export(session, "csv")
    await session.commit()
    body = await (await app.test_client().get(f"/exports/{export.id}")).get_json()
    assert (body["status"], body["rows_written"], body["rows_total"]) == ("queued", 0, None)


async def test_a_superseded_run_writes_no_progress(session: AsyncSession) -> None:
    export = await queries.create_export(session, "csv")
    await session.commit()
    await queries.claim_export(session, export.id, "a" * 32)
    await session.commit()
    await queries.claim_export(session, export.id, "b" * 32)  # a redelivered job took over
    await session.commit()

    await queries.record_progress(session, export.id, "a" * 32, 500)
    await session.commit()
    assert await session.scalar(text("SELECT rows_written FROM exports")) == 0
    await queries.record_progress(session, export.id, "b" * 32, 7)
    await session.commit()
    assert await session.scalar(text("SELECT rows_written FROM exports")) == 7


async def test_a_queued_export_says_when_no_worker_runs(
    app: Quart,
    session: AsyncSession,
    run_worker: Callable[..., Awaitable[Worker]],
) -> None:
    settings = make_settings(worker_health_check_interval=1, export_batch_size=3)
    redis = Redis.from_url(TestServers.redis_url)
    await redis.delete(HEALTH_CHECK_KEY)  # no worker of an earlier test seems alive
    await insert_todos(session, 4)
    async with app_with(worker_health_check_interval=1) as with_redis:
        client = with_redis.test_client()
        export_id = await start_export(client)
        first = await (await client.get(f"/exports/{export_id}")).get_json()
        waiting = await wait_for(client, export_id, lambda body: "notice" in body)
        page = await (await client.get(f"/?export={export_id}")).get_data(as_text=True)

        # A worker comes: the export runs, and says no more.
        await run_worker(settings)
        done = await wait_for_status(client, export_id, "complete")

    await redis.aclose()
    assert first["status"] == "queued" and "notice" not in first  # not before 2 intervals
    assert waiting["status"] == "queued" and waiting["notice"] == NO_WORKER_NOTICE
    assert 'id="export-notice">No worker is running; the export starts when one does.' in page
    assert "notice" not in done and done["rows"] == 4


async def test_no_notice_while_a_busy_worker_runs(
    app: Quart,
    session: AsyncSession,
    run_worker: Callable[..., Awaitable[Worker]],
) -> None:
    """The worker checks in while it writes another export: the queued one just waits."""
    settings = make_settings(worker_health_check_interval=1, export_batch_size=3)
    await insert_todos(session, 4)
    async with app_with(worker_health_check_interval=1) as with_redis:
        client = with_redis.test_client()
        async with hold_export_at_chunk(app, seq=0):
            await run_worker(settings, max_jobs=1)
            busy = await start_export(client, "csv")
            await wait_for_status(client, busy, "in_progress")
            waiting = await start_export(client, "json")
            await asyncio.sleep(2.5)  # past two intervals
            body = await (await client.get(f"/exports/{waiting}")).get_json()
        await wait_for_status(client, waiting, "complete")

    assert body["status"] == "queued" and "notice" not in body


async def test_no_notice_in_process_or_when_redis_fails(session: AsyncSession) -> None:
    """In-process exports need no worker; a Redis that fails leaves the notice out, and the
    status still answers."""
    export = await queries.create_export(session, "csv")
    export.created_at = utc_now() - timedelta(hours=1)
    await session.commit()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    for redis_url in (None, f"redis://127.0.0.1:{closed_port}/0"):
        async with app_with(redis_url=redis_url, worker_health_check_interval=1) as other:
            started = time.monotonic()
            response = await other.test_client().get(f"/exports/{export.id}")
            body = await response.get_json()
        assert response.status_code == 200, redis_url
        assert body["status"] == "queued" and "notice" not in body, redis_url
        assert time.monotonic() - started < 3, redis_url
