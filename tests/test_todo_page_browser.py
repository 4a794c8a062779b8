"""The todo page in a real headless Chromium, against a real `python -m service serve`.

The server runs without Redis, so exports run in its own process. Skipped when
Chromium is not installed.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect
from sqlalchemy.ext.asyncio import AsyncSession

from service.__main__ import PROJECT_ROOT
from service.todos.models import Todo
from service.todos.pages import PAGE_SIZE
from tests.conftest import TestServers

CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STEP_TIMEOUT_MS = 5_000
TEST_BUDGET_SECONDS = 60

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (no `chromium` on PATH)"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def wait_until_up(base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"the server exited during start-up:\n{log.read_text()}")
            try:
                if (await http.get(f"{base_url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                await asyncio.sleep(0.2)
    raise AssertionError(f"the server did not answer within 30 s:\n{log.read_text()}")


@asynccontextmanager
async def serve(log_dir: Path, **settings: str) -> AsyncIterator[str]:
    """A real server on a free port, on the test database, with these settings."""
    port = free_port()
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("DATABASE", "APP_"))
    }
    env.update(
        DATABASE_URL=TestServers.database_url,
        HOST="127.0.0.1",
        PORT=str(port),
        LOG_LEVEL="INFO",
        **settings,
    )
    log = log_dir / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "serve"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_until_up(url, process, log)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
async def base_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """Without Redis: exports run in the server's own process."""
    async with serve(tmp_path_factory.mktemp("server"), REDIS_URL="") as url:
        yield url


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=15_000
        )
        try:
            yield chromium
        finally:
            await chromium.close()


OpenPage = Callable[..., Awaitable[Page]]


@pytest.fixture
async def open_page(browser: Browser, base_url: str, clean_tables: None) -> AsyncIterator[OpenPage]:
    """Open `/` in a fresh browser context (own cookies); the contexts are closed after."""
    expect.set_options(timeout=STEP_TIMEOUT_MS)
    contexts: list[BrowserContext] = []

    async def open_(*, javascript: bool = True) -> Page:
        context = await browser.new_context(base_url=base_url, java_script_enabled=javascript)
        contexts.append(context)
        context.set_default_timeout(STEP_TIMEOUT_MS)
        page = await context.new_page()
        response = await page.goto("/")
        assert response is not None and response.status == 200
        return page

    yield open_
    for context in contexts:
        await context.close()


async def add_todo(page: Page, task: str) -> None:
    await page.locator("#task").fill(task)
    await page.get_by_role("button", name="Add").click()
    await expect(page.locator("li.todo .task").first).to_have_text(task)  # newest first


async def test_add_complete_and_delete_todos(open_page: OpenPage, base_url: str) -> None:
    async with asyncio.timeout(TEST_BUDGET_SECONDS):
        page = await open_page()
        await expect(page.locator("p.empty")).to_have_text("Nothing to do.")

        await add_todo(page, "Water the plants")
        await add_todo(page, "<b>bold</b>")

        await expect(page.locator("li.todo .task")).to_have_text(
            ["<b>bold</b>", "Water the plants"]
        )
        await expect(page.locator("li.todo b")).to_have_count(0)  # shown as text, not markup

        plants = page.locator("li.todo").filter(has_text="Water the plants")
        await plants.get_by_role("button", name="Done").click()
        await expect(plants).to_have_class(re.compile(r"\bdone\b"))
        await expect(plants.locator("button.toggle")).to_have_text("Undo")

        bold = page.locator("li.todo").filter(has_text="<b>bold</b>")
        await bold.get_by_role("button", name="Delete").click()
        await expect(bold).to_have_count(0)
        await expect(page.locator("li.todo")).to_have_count(1)

        stored = await (await page.request.get("/todos")).json()
        assert [(todo["task"], todo["done"]) for todo in stored] == [("Water the plants", True)]


async def test_export_with_javascript(open_page: OpenPage, base_url: str) -> None:
    async with asyncio.timeout(TEST_BUDGET_SECONDS):
        page = await open_page()
        for task in ("first, with a comma", "second"):
            await add_todo(page, task)

        await page.locator("#export-button").click()

        link = page.locator("#download-link")
        await expect(link).to_be_visible(timeout=10_000)
        await expect(page.locator("#export-status")).to_contain_text("Export complete: 2 rows.")
        assert page.url == f"{base_url}/"  # followed by script, not by reloading the page
        async with page.expect_download() as download_info:
            await link.click()
        download = await download_info.value
        assert re.fullmatch(r"todos-[0-9a-f-]{36}\.csv", download.suggested_filename)
        path = await download.path()
        rows = list(csv.DictReader(io.StringIO(path.read_text(), newline="")))
        assert [(row["task"], row["done"]) for row in rows] == [
            ("first, with a comma", "false"),
            ("second", "false"),
        ]


async def test_add_and_export_without_javascript(open_page: OpenPage, base_url: str) -> None:
    async with asyncio.timeout(TEST_BUDGET_SECONDS):
        page = await open_page(javascript=False)

        await add_todo(page, "No script needed")

        assert page.url == f"{base_url}/"  # the form's 303 led back to the page
        await expect(page.locator("li.todo .task")).to_have_text(["No script needed"])

        await page.locator("#export-button").click()
        await page.wait_for_url(re.compile(r"/\?export=[0-9a-f-]{36}$"))
        link = page.locator("#download-link")
        deadline = time.monotonic() + 10
        while not await link.count():
            assert time.monotonic() < deadline, "the export did not complete within 10 s"
            await asyncio.sleep(0.2)
            await page.get_by_role("link", name="Refresh").click()
            await page.wait_for_load_state()
        await expect(page.locator("#export-status")).to_contain_text("Export complete: 1 rows.")
        csv_text = await (await page.request.get(await link.get_attribute("href") or "")).text()
        assert "No script needed" in csv_text


async def test_the_page_keeps_to_its_content_security_policy(open_page: OpenPage) -> None:
    """Chromium enforces the page's policy (tests/test_security.py checks the header): the
    page's own script and styles break none of it, and injected inline script is refused."""
    async with asyncio.timeout(TEST_BUDGET_SECONDS):
        page = await open_page()
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        await page.reload()

        await add_todo(page, "under the policy")
        await page.locator("#export-button").click()
        await expect(page.locator("#export-status")).to_contain_text(
            "Export complete: 1 rows.", timeout=10_000
        )
        hidden_label = page.locator("label.visually-hidden")  # styled by /static/style.css
        assert await hidden_label.evaluate("e => getComputedStyle(e).position") == "absolute"
        assert not [text for text in console if "Content Security Policy" in text], console

        injected = await page.evaluate(
            """() => new Promise((resolve) => {
                document.addEventListener("securitypolicyviolation", (event) =>
                    resolve(window.injected ? "ran" : `refused by ${event.effectiveDirective}`));
                setTimeout(() => resolve(window.injected ? "ran" : "no violation"), 3000);
                const script = document.createElement("script");
                script.textContent = "window.injected = true";
                document.body.append(script);
            })"""
        )
        assert injected == "refused by script-src-elem"


async def test_the_list_in_pages_without_javascript(
    open_page: OpenPage, session: AsyncSession
) -> None:
    session.add_all(Todo(task=f"todo {number}", done=False) for number in range(1, PAGE_SIZE + 2))
    await session.commit()
    async with asyncio.timeout(TEST_BUDGET_SECONDS):
        page = await open_page(javascript=False)
        await expect(page.locator("#todo-count")).to_have_text(f"{PAGE_SIZE + 1} todos")
        await expect(page.locator("li.todo")).to_have_count(PAGE_SIZE)
        await expect(page.locator("li.todo .task").first).to_have_text(f"todo {PAGE_SIZE + 1}")
        await expect(page.locator("#export-button")).to_be_in_viewport()  # above the list

        await page.locator("#pager-top").get_by_role("link", name="Older").click()
        await page.wait_for_url(re.compile(r"/\?page=2$"))
        await expect(page.locator("li.todo .task")).to_have_text(["todo 1"])
        await expect(page.locator("#pager-top .position")).to_have_text("Page 2 of 2")

        await page.locator("li.todo").get_by_role("button", name="Done").click()
        await page.wait_for_url(re.compile(r"/\?page=2$"))  # back on the page it was on
        await expect(page.locator("li.todo")).to_have_class(re.compile(r"\bdone\b"))

        await page.locator("#pager-bottom").get_by_role("link", name="Newer").click()
        await expect(page.locator("#pager-top .position")).to_have_text("Page 1 of 2")
        await expect(page.locator("li.todo")).to_have_count(PAGE_SIZE)


@pytest.mark.parametrize("task", ["", "x" * 501], ids=["empty", "too long"])
async def test_a_refused_task_shows_an_error_page(
    open_page: OpenPage, base_url: str, task: str
) -> None:
    async with asyncio.timeout(TEST_BUDGET_SECONDS):
        page = await open_page()
        # Past the browser's own checks (`required`, `maxlength`): the server's answer.
        await page.locator("form.add").evaluate(
            "(form, task) => { form.noValidate = true; form.elements.task.value = task; }", task
        )
        async with page.expect_navigation() as navigation:
            await page.get_by_role("button", name="Add").click()
        response = await navigation.value
        assert response is not None and response.status == 422

        await expect(page.locator("#error-message")).to_have_text("invalid request body: task")
        await expect(page.locator("body")).not_to_contain_text('"error"')  # no raw JSON
        await page.get_by_role("link", name="Back to the todos").click()
        await page.wait_for_url(f"{base_url}/")
        await expect(page.locator("p.empty")).to_have_text("Nothing to do.")
