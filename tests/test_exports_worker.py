"""Exports through Redis and a real arq worker: in this process (`Worker`) or a subprocess."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from arq.worker import Worker
from quart import Quart
from quart.testing import QuartClient
from redis.asyncio import Redis
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jobs.cleanup import purge_exports
from jobs.options import worker_options
from service.__main__ import PROJECT_ROOT
from service.app import create_app
from service.config import Settings
from service.db import make_engine
from service.exports.life import run_export
from service.exports.models import Export, ExportChunk
from service.queue import HEALTH_CHECK_KEY
from service.todos.models import Todo
from tests.conftest import TestServers, make_settings

WORKER_SETTINGS = {
    "worker_health_check_interval": 1,
    "export_batch_size": 7,
    "worker_metrics_port": 0,
}


async def insert_todos(session: AsyncSession, count: int) -> None:
    await session.execute(
        text(
            "INSERT INTO todos (task, done, created_at, updated_at) "
            "SELECT 'task ' || g || ' ✓, \"quoted\"', g % 3 = 0, now(), now() "
            "FROM generate_series(1, :count) AS g"
        ),
        {"count": count},
    )
    await session.commit()


async def todos_in_db(session: AsyncSession) -> list[tuple[int, str, bool]]:
    rows = await session.execute(select(Todo.id, Todo.task, Todo.done).order_by(Todo.id))
    return [(row.id, row.task, row.done) for row in rows]


async def wait_for_status(
    client: QuartClient, export_id: str, wanted: str, timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = await (await client.get(f"/exports/{export_id}")).get_json()
        if body["status"] == wanted:
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"export {export_id} did not become {wanted}: {body}")


async def start_export(client: QuartClient, export_format: str = "csv") -> str:
    response = await client.post("/export", json={"format": export_format})
    assert response.status_code == 202
    return (await response.get_json())["job_id"]


def parse_csv(data: bytes) -> list[tuple[int, str, bool]]:
    reader = csv.DictReader(io.StringIO(data.decode()))
    return [(int(row["id"]), row["task"], row["done"] == "true") for row in reader]


def start_arq_worker(**env_overrides: str) -> subprocess.Popen[bytes]:
    """`arq jobs.worker.WorkerSettings` as its own process, on the test database and Redis."""
    env = {
        **os.environ,
        "DATABASE_URL": TestServers.database_url,
        "REDIS_URL": TestServers.redis_url,
        "EXPORT_BATCH_SIZE": "100",
        "WORKER_HEALTH_CHECK_INTERVAL": "1",
        "WORKER_METRICS_PORT": "0",
        **env_overrides,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "arq", "jobs.worker.WorkerSettings"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def wait_for_chunks(session: AsyncSession, export_id: str, at_least: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        written = await session.scalar(
            select(func.count()).select_from(ExportChunk).where(ExportChunk.export_id == export_id)
        )
        if written and written >= at_least:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"export {export_id} wrote fewer than {at_least} chunks")


async def watch_downloads(
    client: QuartClient, export_id: str, stop: asyncio.Event, seen: list[tuple[int, int]]
) -> None:
    """Try the download until `stop`; record (status, rows in the file) each time."""
    while not stop.is_set():
        response = await client.get(f"/exports/{export_id}/download")
        rows = len(parse_csv(await response.get_data())) if response.status_code == 200 else 0
        seen.append((response.status_code, rows))
        await asyncio.sleep(0.05)


@pytest.fixture
async def run_worker() -> AsyncIterator[Callable[..., Awaitable[Worker]]]:
    """Start arq `Worker`s on this event loop; they are closed after the test."""
    started: list[tuple[Worker, asyncio.Task[None]]] = []

    async def start(settings: Settings, **overrides: Any) -> Worker:
        options = {**worker_options(settings), **overrides}
        worker = Worker(
            **options, handle_signals=False, poll_delay=0.05, ctx={"settings": settings}
        )
        started.append((worker, asyncio.create_task(worker.async_run())))
        return worker

    yield start
    for worker, task in started:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await worker.close()


async def test_csv_and_json_exports_through_a_real_worker(
    client: QuartClient, session: AsyncSession, run_worker: Callable[..., Awaitable[Worker]]
) -> None:
    await insert_todos(session, 25)  # 4 batches of 7: the file is written in chunks
    await run_worker(make_settings(**WORKER_SETTINGS))
    expected = await todos_in_db(session)

    csv_id = await start_export(client, "csv")
    json_id = await start_export(client, "json")
    done = await wait_for_status(client, csv_id, "complete")
    await wait_for_status(client, json_id, "complete")

    assert done["rows"] == 25
    assert done["download_url"] == f"/exports/{csv_id}/download"
    download = await client.get(done["download_url"])
    assert download.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert parse_csv(await download.get_data()) == expected

    as_json = json.loads(await (await client.get(f"/exports/{json_id}/download")).get_data())
    assert [(row["id"], row["task"], row["done"]) for row in as_json] == expected
    chunks = await session.scalar(
        select(func.count()).select_from(ExportChunk).where(ExportChunk.export_id == csv_id)
    )
    assert chunks == 4


async def test_a_transient_database_failure_is_retried(
    client: QuartClient,
    session: AsyncSession,
    run_worker: Callable[..., Awaitable[Worker]],
    log_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    await insert_todos(session, 5)
    settings = make_settings(**WORKER_SETTINGS)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    down_engine = make_engine(
        make_settings(database_url=f"postgresql://postgres@127.0.0.1:{closed_port}/nope")
    )

    async def database_down_on_first_try(ctx: dict[str, Any]) -> None:
        if ctx["job_try"] == 1:
            ctx["sessionmaker"] = async_sessionmaker(down_engine)

    try:
        await run_worker(settings, on_job_start=database_down_on_first_try)
        export_id = await start_export(client)
        done = await wait_for_status(client, export_id, "complete")
    finally:
        await down_engine.dispose()

    assert done["rows"] == 5
    warnings = [line["message"] for line in log_lines() if line["level"] == "WARNING"]
    assert any(f"export {export_id}: try 1 failed" in message for message in warnings)
    export = await session.get(Export, export_id)
    assert export is not None and export.attempts == 1  # the failed try never claimed it


async def test_a_killed_worker_leaves_a_job_that_completes_exactly_once(
    client: QuartClient, session: AsyncSession
) -> None:
    await insert_todos(session, 20_000)

    def start_worker() -> subprocess.Popen[bytes]:
        # arq offers a dead worker's job to another after its timeout + 10 s
        return start_arq_worker(EXPORT_JOB_TIMEOUT="4")

    first = start_worker()
    downloads: list[tuple[int, int]] = []
    watching = asyncio.Event()
    try:
        export_id = await start_export(client)
        # Someone keeps trying the download all along: never may they get half a file.
        watcher = asyncio.create_task(watch_downloads(client, export_id, watching, downloads))
        await wait_for_chunks(session, export_id, at_least=5)  # kill it mid-export
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        status = await (await client.get(f"/exports/{export_id}")).get_json()
        assert status["status"] == "in_progress"
        assert (await client.get(f"/exports/{export_id}/download")).status_code == 409
    except BaseException:
        watching.set()
        raise
    finally:
        if first.poll() is None:
            first.kill()

    second = start_worker()
    second_started = len(downloads)
    try:
        done = await wait_for_status(client, export_id, "complete", timeout=60)
        await asyncio.sleep(0.2)  # a download or two of the finished file
    finally:
        watching.set()
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
    await asyncio.wait_for(watcher, timeout=30)

    assert done["rows"] == 20_000
    assert {status for status, _rows in downloads} <= {409, 200}
    assert all(rows == 20_000 for status, rows in downloads if status == 200)
    assert any(status == 409 for status, _rows in downloads[second_started:])
    assert downloads[-1] == (200, 20_000)
    export = await session.get(Export, export_id)
    assert export is not None
    assert export.attempts == 2  # the killed run and the one that finished; no third
    ids = [row[0] for row in parse_csv(await (await client.get(done["download_url"])).get_data())]
    assert len(ids) == len(set(ids)) == 20_000
    runs = await session.scalar(
        select(func.count(func.distinct(ExportChunk.run_token))).where(
            ExportChunk.export_id == export_id
        )
    )
    assert runs == 1  # the killed run's partial chunks are gone


async def test_duplicate_deliveries_write_one_file(app: Quart, session: AsyncSession) -> None:
    await insert_todos(session, 30)
    export = Export(id="00000000-0000-4000-8000-000000000001", format="csv", status="queued")
    session.add(export)
    await session.commit()
    sessionmaker = app.extensions["database"].sessionmaker

    outcomes = await asyncio.gather(
        *(run_export(sessionmaker, export.id, batch_size=4) for _ in range(3))
    )
    again = await run_export(sessionmaker, export.id, batch_size=4)

    assert set(outcomes) == {"complete"} and again == "complete"
    await session.refresh(export)
    chunks = (
        await session.execute(
            select(ExportChunk.run_token, ExportChunk.seq, ExportChunk.data)
            .where(ExportChunk.export_id == export.id)
            .order_by(ExportChunk.seq)
        )
    ).all()
    assert {chunk.run_token for chunk in chunks} == {export.run_token}
    assert [chunk.seq for chunk in chunks] == list(range(len(chunks)))
    assert parse_csv(b"".join(chunk.data for chunk in chunks)) == await todos_in_db(session)


async def test_redis_down_refuses_exports_and_writes_nothing(
    session: AsyncSession,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    app = create_app(make_settings(redis_url=f"redis://127.0.0.1:{closed_port}/0"))
    async with app.test_app() as test_app:
        client = test_app.test_client()
        started = time.monotonic()
        response = await client.post("/export", json={})
        assert time.monotonic() - started < 5
        assert response.status_code == 503
        error = (await response.get_json())["error"]
        assert "Redis" in error["message"]

        background = await client.get("/healthz/background")
        assert background.status_code == 503
        assert (await background.get_json())["redis"] == "failing"
        dependencies = await client.get("/api/health")
        assert dependencies.status_code == 503
        assert (await dependencies.get_json())["redis"] == "disconnected"
        assert (await client.get("/products")).status_code == 200  # reads still work

    assert await session.scalar(select(func.count()).select_from(Export)) == 0


async def test_background_health_sees_the_worker(
    client: QuartClient, run_worker: Callable[..., Awaitable[Worker]]
) -> None:
    redis = Redis.from_url(TestServers.redis_url)
    await redis.delete(HEALTH_CHECK_KEY)
    await redis.aclose()
    missing = await client.get("/healthz/background")
    assert missing.status_code == 503
    assert (await missing.get_json())["worker"] == "missing"

    await run_worker(make_settings(**WORKER_SETTINGS))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        alive = await client.get("/healthz/background")
        if alive.status_code == 200:
            break
        await asyncio.sleep(0.1)
    body = await alive.get_json()
    assert body == {
        "status": "ok",
        "mode": "arq",
        "redis": "ok",
        "worker": "alive",
        "queue_depth": body["queue_depth"],
    }
    assert isinstance(body["queue_depth"], int)
    health = await (await client.get("/api/health")).get_json()
    assert health == {
        "status": "UP",
        "database": "connected",
        "redis": "connected",
        "worker": "alive",
    }


async def test_the_cron_deletes_old_exports_and_fails_stuck_ones(
    app: Quart, session: AsyncSession
) -> None:
    now = datetime.now(UTC)
    rows = {
        "old": Export(
            id="00000000-0000-4000-8000-00000000000a",
            format="csv",
            status="complete",
            created_at=now - timedelta(hours=30),
        ),
        "fresh": Export(
            id="00000000-0000-4000-8000-00000000000b",
            format="csv",
            status="complete",
            created_at=now - timedelta(hours=1),
        ),
        "stuck": Export(
            id="00000000-0000-4000-8000-00000000000c",
            format="csv",
            status="in_progress",
            created_at=now - timedelta(hours=5),
        ),
    }
    session.add_all(rows.values())
    await session.flush()
    session.add(ExportChunk(export_id=rows["old"].id, run_token="r", seq=0, data=b"x"))
    await session.commit()
    settings = make_settings(export_retention_hours=24, export_job_timeout=60, export_max_tries=3)

    outcome = await purge_exports(
        {"settings": settings, "sessionmaker": app.extensions["database"].sessionmaker}
    )

    assert outcome == {"deleted": 1, "failed": 1}
    statuses = dict((await session.execute(select(Export.id, Export.status))).all())
    assert statuses == {rows["fresh"].id: "complete", rows["stuck"].id: "failed"}
    assert await session.scalar(select(func.count()).select_from(ExportChunk)) == 0


async def test_sigterm_lets_the_worker_finish_the_job_in_hand(
    client: QuartClient, session: AsyncSession
) -> None:
    await insert_todos(session, 20_000)
    worker = start_arq_worker(WORKER_JOB_COMPLETION_WAIT="30")
    try:
        export_id = await start_export(client)
        await wait_for_chunks(session, export_id, at_least=3)
        worker.send_signal(signal.SIGTERM)
        exit_code = await asyncio.to_thread(worker.wait, 40)
    finally:
        if worker.poll() is None:
            worker.kill()

    assert exit_code == 0
    done = await (await client.get(f"/exports/{export_id}")).get_json()
    assert done["status"] == "complete" and done["rows"] == 20_000
