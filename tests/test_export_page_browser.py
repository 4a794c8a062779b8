"""The export on the todo page in a real headless Chromium: the progress bar, the Export
button disabled while an export runs (also after a reload), a failure's reason, and the
notice when no worker runs. Against real `python -m service serve` processes.

Exports are held at a chunk, or made to fail, by a test trigger on `export_chunks`
(tests/test_exports_progress.py): no timing guesses.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Locator, Page, Request, expect
from quart import Quart
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from service.queue import HEALTH_CHECK_KEY, QUEUE_NAME
from tests import test_todo_page_browser as todo_page
from tests.conftest import TestServers
from tests.test_exports_progress import export_chunks_trigger, hold_export_at_chunk
from tests.test_exports_worker import insert_todos
from tests.test_todo_page_browser import (
    CHROMIUM,
    STEP_TIMEOUT_MS,
    TEST_BUDGET_SECONDS,
    OpenPage,
    serve,
)

# The todo page tests' fixtures, here too (each module starts its own server).
base_url = todo_page.base_url
browser = todo_page.browser
open_page = todo_page.open_page

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (no `chromium` on PATH)"
)


def export_parts(page: Page) -> tuple[Locator, Locator, Locator]:
    return (
        page.locator("#export-button"),
        page.locator("#export-progress"),
        page.locator("#export-status"),
    )


async def test_the_progress_bar_and_the_disabled_button(
    open_page: OpenPage, session: AsyncSession, app: Quart
) -> None:
    await insert_todos(session, 1500)  # in-process batches of 200: held after chunk 0
    async with asyncio.timeout(TEST_BUDGET_SECONDS):
        page = await open_page()
        button, bar, status = export_parts(page)
        await expect(bar).to_be_hidden()
        async with hold_export_at_chunk(app, seq=1):
            await button.click()
            await expect(status).to_have_text("Export in progress: 200 of 1500 rows.")
            await expect(bar).to_be_visible()
            await expect(bar).to_have_js_property("value", 200)
            await expect(bar).to_have_js_property("max", 1500)
            await expect(button).to_be_disabled()

            # A reload: the server knows this client's running export, disables the button
            # in the HTML itself, and the page follows the export again.
            html = await (await page.request.get("/")).text()
            assert 'id="export-button" disabled' in html
            await page.reload()
            await expect(status).to_have_text("Export in progress: 200 of 1500 rows.")
            await expect(bar).to_have_js_property("value", 200)
            await expect(button).to_be_disabled()

        await expect(page.locator("#download-link")).to_be_visible(timeout=10_000)
        await expect(status).to_contain_text("Export complete: 1500 rows.")
        await expect(bar).to_have_js_property("value", 1500)  # the bar reaches its end
        await expect(bar).to_have_js_property("max", 1500)
        await expect(button).to_be_enabled()
        html = await (await page.request.get("/")).text()
        assert 'id="export-button">' in html  # nothing pending: enabled


async def test_a_failed_export_shows_why_and_stops_polling(open_page: OpenPage, app: Quart) -> None:
    async with (
        asyncio.timeout(TEST_BUDGET_SECONDS),
        export_chunks_trigger(app, "RAISE EXCEPTION 'test: the export breaks';"),
    ):
        page = await open_page()
        button, bar, status = export_parts(page)
        status_requests: list[str] = []

        def count(request: Request) -> None:
            if "/exports/" in request.url:
                status_requests.append(request.url)

        page.on("request", count)
        await button.click()
        await expect(page.locator("#export-error")).to_have_text("The export failed.")
        await expect(status).to_contain_text("Export failed.")
        await expect(bar).to_be_hidden()
        await expect(button).to_be_enabled()
        polled = len(status_requests)
        await asyncio.sleep(1.5)  # three poll intervals
        assert len(status_requests) == polled  # no polling after `failed`


@pytest.fixture(scope="module")
async def redis_base_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """With Redis and no worker: exports wait in the queue."""
    async with serve(
        tmp_path_factory.mktemp("redis-server"),
        REDIS_URL=TestServers.redis_url,
        WORKER_HEALTH_CHECK_INTERVAL="1",
    ) as url:
        yield url


async def test_the_page_says_when_no_worker_runs(
    browser: Browser, redis_base_url: str, clean_tables: None
) -> None:
    redis = Redis.from_url(TestServers.redis_url)
    await redis.delete(HEALTH_CHECK_KEY)  # no worker of an earlier test seems alive
    context = await browser.new_context(base_url=redis_base_url)
    context.set_default_timeout(STEP_TIMEOUT_MS)
    try:
        async with asyncio.timeout(TEST_BUDGET_SECONDS):
            page = await context.new_page()
            await page.goto("/")
            button, bar, status = export_parts(page)
            await button.click()
            await expect(status).to_have_text("Export queued.")
            await expect(page.locator("#export-notice")).to_have_text(
                "No worker is running; the export starts when one does."
            )
            await expect(button).to_be_disabled()
            await expect(bar).to_be_hidden()
    finally:
        await context.close()
        # The job would wait for the next test's worker, on a truncated table: take it back.
        for job_id in await redis.zrange(QUEUE_NAME, 0, -1):
            await redis.delete(f"arq:job:{job_id.decode()}")
        await redis.delete(QUEUE_NAME)
        await redis.aclose()
