"""An export that runs out of time ends `failed` with a reason, not `in_progress` for an hour.

The export is held up by a lock on the todos table that the test keeps until the
export has failed: a slow export without any timing guesswork.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from quart import Quart
from quart.testing import QuartClient
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from service.app import create_app
from service.exports.job import ABANDONED_REASON, time_allowed
from service.exports.models import Export
from tests.conftest import make_settings
from tests.test_exports_worker import start_arq_worker, start_export, wait_for_status

JOB_TIMEOUT = 4  # arq cancels at 4 s; our own deadline fails the export at 3 s


@asynccontextmanager
async def lock_todos(app: Quart) -> AsyncIterator[None]:
    """ACCESS EXCLUSIVE on todos while inside: any export's read waits."""
    async with app.extensions["database"].sessionmaker() as locker:
        await locker.execute(text("LOCK TABLE todos IN ACCESS EXCLUSIVE MODE"))
        yield
        await locker.rollback()


@pytest.fixture
async def todos_locked(app: Quart) -> AsyncIterator[None]:
    async with lock_todos(app):
        yield


async def wait_until_failed(client: QuartClient, export_id: str) -> dict[str, Any]:
    # Bounded: our deadline plus the worker's start, not the hour of the stale-export sweep.
    return await wait_for_status(client, export_id, "failed", timeout=30)


def test_our_deadline_comes_before_arqs() -> None:
    assert time_allowed(600) == 590
    assert time_allowed(JOB_TIMEOUT) == 3


async def test_a_timed_out_export_fails_with_a_reason_in_the_worker(
    client: QuartClient, session: AsyncSession, todos_locked: None
) -> None:
    worker = start_arq_worker(EXPORT_JOB_TIMEOUT=str(JOB_TIMEOUT))
    try:
        export_id = await start_export(client)
        body = await wait_until_failed(client, export_id)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)

    assert body["error"] == f"the export took longer than {JOB_TIMEOUT} s"
    assert "download_url" not in body
    export = await session.get(Export, export_id)
    assert export is not None and export.attempts <= 1  # a timeout is not retried
    assert (await client.get(f"/exports/{export_id}/download")).status_code == 409


async def test_a_timed_out_export_fails_with_a_reason_in_process(
    session: AsyncSession, app: Quart
) -> None:
    other = create_app(make_settings(redis_url=None, export_job_timeout=JOB_TIMEOUT))
    async with other.test_app():
        client = other.test_client()
        async with lock_todos(app):
            export_id = await start_export(client)
            body = await wait_until_failed(client, export_id)
        # The page lists the todos: read once the lock is gone.
        page = await (await client.get(f"/?export={export_id}")).get_data(as_text=True)

    assert body["error"] == f"the export took longer than {JOB_TIMEOUT} s"
    assert f"The export took longer than {JOB_TIMEOUT} s." in page  # the page shows why


async def test_in_process_exports_a_stopping_server_cuts_off_fail_with_a_reason(
    session: AsyncSession, app: Quart
) -> None:
    """Without Redis no worker picks a cancelled export up again: the one running and the
    one waiting for its turn fail with a reason (the page stops polling, the client's
    slots are free) instead of staying pending."""
    other = create_app(make_settings(redis_url=None, graceful_timeout=0.2))
    # The running export waits on the lock until the stop; leaving test_app() (first)
    # runs after_serving: the server stops.
    async with lock_todos(app), other.test_app():
        client = other.test_client()
        running = await start_export(client, "csv")
        waiting = await start_export(client, "json")  # one at a time: it waits its turn
        await wait_for_status(client, waiting, "queued")

    statuses = {
        export.id: (export.status, export.error)
        for export in (await session.execute(select(Export))).scalars()
    }
    assert statuses == {
        running: ("failed", ABANDONED_REASON),
        waiting: ("failed", ABANDONED_REASON),
    }
