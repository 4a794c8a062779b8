"""The todos: the JSON API, the HTML page with its form posts (and their CSRF checks), exports."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from html.parser import HTMLParser
from http.cookies import SimpleCookie
from typing import Any

import pytest
from quart import Quart, Response
from quart.testing import QuartClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.app import create_app
from service.exports.models import Export
from service.todos.models import Todo
from tests.conftest import make_settings

TODO_KEYS = {"id", "task", "done", "created_at", "updated_at"}
CROSS_SITE = "http://evil.example"


# --- helpers ------------------------------------------------------------------------


async def make_todo(session: AsyncSession, task: str = "a task", done: bool = False) -> Todo:
    todo = Todo(task=task, done=done)
    session.add(todo)
    await session.commit()
    return todo


async def count_todos(session: AsyncSession) -> int:
    return await session.scalar(select(func.count()).select_from(Todo)) or 0


async def todo_row(session: AsyncSession, todo_id: int) -> dict[str, Any] | None:
    """The row as stored now (a Core select: never the session's cached object)."""
    table = Todo.__table__
    result = await session.execute(select(table).where(table.c.id == todo_id))
    row = result.mappings().one_or_none()
    return dict(row) if row is not None else None


async def todos_in_db(session: AsyncSession) -> list[tuple[int, str, bool]]:
    table = Todo.__table__
    result = await session.execute(select(table.c.id, table.c.task, table.c.done).order_by("id"))
    return [(row.id, row.task, row.done) for row in result]


def ids(body: list[dict[str, Any]]) -> list[int]:
    return [todo["id"] for todo in body]


def error_fields(body: dict[str, Any]) -> list[str]:
    return [detail["field"] for detail in body["error"].get("details", [])]


class TodoPage(HTMLParser):
    """What the page shows: its todos, the forms' actions and their CSRF tokens."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.todos: list[dict[str, Any]] = []
        self.form_actions: list[str] = []
        self.tokens: list[str] = []
        self._in_task = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if tag == "li" and "todo" in classes:
            todo_id = int(attributes["data-id"] or 0)
            self.todos.append({"id": todo_id, "done": "done" in classes, "task": ""})
        elif tag == "span" and "task" in classes:
            self._in_task = True
        elif tag == "form":
            self.form_actions.append(attributes["action"] or "")
        elif tag == "input" and attributes.get("name") == "csrf_token":
            assert attributes.get("type") == "hidden"
            self.tokens.append(attributes["value"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "span":
            self._in_task = False

    def handle_data(self, data: str) -> None:
        if self._in_task:
            self.todos[-1]["task"] += data


async def page_token(client: QuartClient) -> str:
    """Open the page as a browser does; the client keeps the cookie, the token is returned."""
    response = await client.get("/")
    assert response.status_code == 200
    return SimpleCookie(response.headers["Set-Cookie"])["csrf_token"].value


async def assert_refused(response: Response, session: AsyncSession, todos_before: int) -> None:
    assert response.status_code == 400
    assert response.content_type == "application/json"
    error = (await response.get_json())["error"]
    assert error["status"] == 400
    assert await count_todos(session) == todos_before


async def wait_for_export(client: QuartClient, export_id: str, within: float = 10) -> dict:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        response = await client.get(f"/exports/{export_id}")
        assert response.status_code == 200
        body = await response.get_json()
        assert body["status"] != "failed", body
        if body["status"] == "complete":
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"export {export_id} did not complete within {within} s")


def export_id_from(location: str) -> str:
    assert location.startswith("/?export=")
    export_id = location.removeprefix("/?export=")
    assert str(uuid.UUID(export_id)) == export_id
    return export_id


@pytest.fixture
async def in_process(clean_tables: None) -> AsyncIterator[QuartClient]:
    """A client of an app without Redis: its exports run in the API process.

    Batches of 2 rows, so that a file is written in several chunks.
    """
    other: Quart = create_app(make_settings(redis_url=None, export_batch_size=2))
    async with other.test_app():
        yield other.test_client()


# --- GET /todos -----------------------------------------------------------------------


async def test_list_todos_in_id_order(client: QuartClient, session: AsyncSession) -> None:
    made = [await make_todo(session, task=task) for task in ("zeta", "alpha", "mid")]

    response = await client.get("/todos")

    assert response.status_code == 200
    body = await response.get_json()
    assert ids(body) == [todo.id for todo in made]
    assert [todo["task"] for todo in body] == ["zeta", "alpha", "mid"]
    assert set(body[0]) == TODO_KEYS


async def test_list_todos_limit_and_offset(client: QuartClient, session: AsyncSession) -> None:
    made = [await make_todo(session) for _ in range(5)]

    response = await client.get("/todos", query_string={"limit": 2, "offset": 3})

    assert response.status_code == 200
    assert ids(await response.get_json()) == [made[3].id, made[4].id]


@pytest.mark.parametrize(("value", "expected"), [("true", [1]), ("false", [0, 2])])
async def test_list_todos_filtered_by_done(
    client: QuartClient, session: AsyncSession, value: str, expected: list[int]
) -> None:
    made = [await make_todo(session, done=done) for done in (False, True, False)]

    response = await client.get("/todos", query_string={"done": value})

    assert response.status_code == 200
    assert ids(await response.get_json()) == [made[i].id for i in expected]


@pytest.mark.parametrize(
    ("field", "value"),
    [("limit", "0"), ("limit", "501"), ("limit", "abc"), ("offset", "-1"), ("done", "maybe")],
)
async def test_bad_query_parameter_is_400(client: QuartClient, field: str, value: str) -> None:
    response = await client.get("/todos", query_string={field: value})

    assert response.status_code == 400
    body = await response.get_json()
    assert body["error"]["status"] == 400
    assert error_fields(body) == [field]


async def test_limit_500_is_allowed(client: QuartClient, session: AsyncSession) -> None:
    todo = await make_todo(session)

    response = await client.get("/todos", query_string={"limit": 500})

    assert response.status_code == 200
    assert ids(await response.get_json()) == [todo.id]


# --- POST /todos ----------------------------------------------------------------------


async def test_create_todo(client: QuartClient, session: AsyncSession) -> None:
    response = await client.post("/todos", json={"task": "Buy milk"})

    assert response.status_code == 201
    body = await response.get_json()
    assert set(body) == TODO_KEYS
    assert (body["task"], body["done"]) == ("Buy milk", False)
    assert response.headers["Location"] == f"/todos/{body['id']}"
    row = await todo_row(session, body["id"])
    assert row is not None
    assert (row["task"], row["done"]) == ("Buy milk", False)
    assert row["created_at"] == datetime.fromisoformat(body["created_at"])
    assert row["updated_at"] == datetime.fromisoformat(body["updated_at"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"task": ""}, "task", id="empty"),
        pytest.param({"task": "x" * 501}, "task", id="501 characters"),
        pytest.param({"task": "a\x00b"}, "task", id="NUL"),
        pytest.param({"task": 5}, "task", id="not a string"),
        pytest.param({"task": None}, "task", id="null"),
        pytest.param({}, "task", id="missing"),
        pytest.param({"task": "ok", "extra": 1}, "extra", id="extra field"),
    ],
)
async def test_invalid_todo_is_422_and_nothing_is_written(
    client: QuartClient, session: AsyncSession, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/todos", json=body)

    assert response.status_code == 422
    answer = await response.get_json()
    assert answer["error"]["status"] == 422
    assert error_fields(answer) == [field]
    assert await count_todos(session) == 0


async def test_task_of_500_characters_is_accepted(client: QuartClient) -> None:
    response = await client.post("/todos", json={"task": "x" * 500})

    assert response.status_code == 201


# --- GET /todos/<id> ------------------------------------------------------------------


async def test_get_todo(client: QuartClient, session: AsyncSession) -> None:
    todo = await make_todo(session, task="Read", done=True)

    response = await client.get(f"/todos/{todo.id}")

    assert response.status_code == 200
    body = await response.get_json()
    assert (body["id"], body["task"], body["done"]) == (todo.id, "Read", True)
    assert datetime.fromisoformat(body["created_at"]) == todo.created_at


@pytest.mark.parametrize("todo_id", ["424242", "abc", "0", "-1", "99999999999"])
async def test_unknown_todo_is_404(
    client: QuartClient, session: AsyncSession, todo_id: str
) -> None:
    await make_todo(session)

    response = await client.get(f"/todos/{todo_id}")

    assert response.status_code == 404
    assert (await response.get_json())["error"]["status"] == 404


# --- PUT / PATCH / DELETE ---------------------------------------------------------------


async def test_put_replaces_task_and_done(client: QuartClient, session: AsyncSession) -> None:
    todo = await make_todo(session, task="old")

    response = await client.put(f"/todos/{todo.id}", json={"task": "new", "done": True})

    assert response.status_code == 200
    body = await response.get_json()
    assert (body["id"], body["task"], body["done"]) == (todo.id, "new", True)
    row = await todo_row(session, todo.id)
    assert row is not None and (row["task"], row["done"]) == ("new", True)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"task": "new"}, "done"),
        ({"done": True}, "task"),
        ({"task": "new", "done": "yes"}, "done"),
        ({"task": "new", "done": 1}, "done"),
    ],
)
async def test_invalid_put_is_422_and_row_unchanged(
    client: QuartClient, session: AsyncSession, body: dict[str, Any], field: str
) -> None:
    todo = await make_todo(session)
    before = await todo_row(session, todo.id)

    response = await client.put(f"/todos/{todo.id}", json=body)

    assert response.status_code == 422
    assert field in error_fields(await response.get_json())
    assert await todo_row(session, todo.id) == before


async def test_patch_changes_only_the_given_field(
    client: QuartClient, session: AsyncSession
) -> None:
    todo = await make_todo(session, task="keep")
    before = await todo_row(session, todo.id)
    assert before is not None

    response = await client.patch(f"/todos/{todo.id}", json={"done": True})

    assert response.status_code == 200
    body = await response.get_json()
    assert (body["task"], body["done"]) == ("keep", True)
    after = await todo_row(session, todo.id)
    assert after is not None
    assert (after["task"], after["done"], after["created_at"]) == (
        "keep",
        True,
        before["created_at"],
    )


async def test_empty_patch_is_400(client: QuartClient, session: AsyncSession) -> None:
    todo = await make_todo(session)
    before = await todo_row(session, todo.id)

    response = await client.patch(f"/todos/{todo.id}", json={})

    assert response.status_code == 400
    assert (await response.get_json())["error"]["message"] == "the body names no field to change"
    assert await todo_row(session, todo.id) == before


async def test_patch_with_an_unknown_field_is_422(
    client: QuartClient, session: AsyncSession
) -> None:
    todo = await make_todo(session)
    before = await todo_row(session, todo.id)

    response = await client.patch(f"/todos/{todo.id}", json={"done": True, "colour": "red"})

    assert response.status_code == 422
    assert error_fields(await response.get_json()) == ["colour"]
    assert await todo_row(session, todo.id) == before


async def test_delete_then_404(client: QuartClient, session: AsyncSession) -> None:
    todo = await make_todo(session)
    other = await make_todo(session)

    response = await client.delete(f"/todos/{todo.id}")

    assert response.status_code == 204
    assert await todo_row(session, todo.id) is None
    assert await todo_row(session, other.id) is not None
    assert (await client.get(f"/todos/{todo.id}")).status_code == 404
    assert (await client.delete(f"/todos/{todo.id}")).status_code == 404


# --- the page ---------------------------------------------------------------------------


async def test_page_lists_the_todos_newest_first(
    client: QuartClient, session: AsyncSession
) -> None:
    first = await make_todo(session, task="first")
    second = await make_todo(session, task="second", done=True)

    response = await client.get("/")

    assert response.status_code == 200
    assert response.content_type == "text/html; charset=utf-8"
    page = TodoPage(await response.get_data(as_text=True))
    assert page.todos == [
        {"id": second.id, "task": "second", "done": True},
        {"id": first.id, "task": "first", "done": False},
    ]


async def test_empty_page_says_nothing_to_do(client: QuartClient) -> None:
    response = await client.get("/")

    assert response.status_code == 200
    assert "Nothing to do." in await response.get_data(as_text=True)


async def test_page_sets_a_csrf_cookie_and_puts_it_in_every_form(
    client: QuartClient, session: AsyncSession
) -> None:
    todo = await make_todo(session)

    response = await client.get("/")

    cookie = SimpleCookie(response.headers["Set-Cookie"])["csrf_token"]
    assert len(cookie.value) >= 32
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    page = TodoPage(await response.get_data(as_text=True))
    assert page.form_actions == [
        "/add",
        "/export/start",
        f"/todos/{todo.id}/toggle",
        f"/todos/{todo.id}/delete",
    ]
    assert page.tokens == [cookie.value] * len(page.form_actions)


async def test_page_keeps_the_token_of_the_cookie(client: QuartClient) -> None:
    token = await page_token(client)

    again = await client.get("/")

    assert "Set-Cookie" not in again.headers
    assert set(TodoPage(await again.get_data(as_text=True)).tokens) == {token}


async def test_page_escapes_user_text(client: QuartClient, session: AsyncSession) -> None:
    await make_todo(session, task="<script>alert(1)</script>")

    response = await client.get("/")

    html = await response.get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert" not in html
    assert TodoPage(html).todos[0]["task"] == "<script>alert(1)</script>"


# --- POST /add --------------------------------------------------------------------------


async def test_add_like_the_seeds_curl_example(client: QuartClient, session: AsyncSession) -> None:
    response = await client.post("/add", form={"task": "Test task 1"})

    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    assert [task for _, task, _ in await todos_in_db(session)] == ["Test task 1"]


async def test_add_with_cookie_and_token(client: QuartClient, session: AsyncSession) -> None:
    token = await page_token(client)

    response = await client.post("/add", form={"task": "from the page", "csrf_token": token})

    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    [(todo_id, task, done)] = await todos_in_db(session)
    assert (task, done) == ("from the page", False)
    page = TodoPage(await (await client.get("/")).get_data(as_text=True))
    assert page.todos == [{"id": todo_id, "task": "from the page", "done": False}]


async def test_add_with_the_pages_own_origin(client: QuartClient, session: AsyncSession) -> None:
    token = await page_token(client)

    response = await client.post(
        "/add",
        form={"task": "same origin", "csrf_token": token},
        headers={"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"},
    )

    assert response.status_code == 303
    assert await count_todos(session) == 1


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Origin": CROSS_SITE}, id="cross-site Origin"),
        pytest.param({"Sec-Fetch-Site": "cross-site"}, id="Sec-Fetch-Site cross-site"),
        pytest.param({"Sec-Fetch-Site": "same-site"}, id="Sec-Fetch-Site same-site"),
    ],
)
async def test_add_from_another_site_is_refused_even_with_the_token(
    client: QuartClient, session: AsyncSession, headers: dict[str, str]
) -> None:
    token = await page_token(client)

    response = await client.post(
        "/add", form={"task": "forged", "csrf_token": token}, headers=headers
    )

    await assert_refused(response, session, 0)


async def test_add_from_a_browser_without_token_is_refused(
    client: QuartClient, session: AsyncSession
) -> None:
    response = await client.post(
        "/add", form={"task": "no token"}, headers={"Sec-Fetch-Site": "same-origin"}
    )

    await assert_refused(response, session, 0)


async def test_add_with_a_wrong_token_is_refused(
    client: QuartClient, session: AsyncSession
) -> None:
    await page_token(client)

    response = await client.post("/add", form={"task": "wrong", "csrf_token": "not-the-token"})

    await assert_refused(response, session, 0)


async def test_add_with_a_token_but_no_cookie_is_refused(
    client: QuartClient, app: Quart, session: AsyncSession
) -> None:
    token = await page_token(client)
    cookieless = app.test_client(use_cookies=False)

    response = await cookieless.post("/add", form={"task": "no cookie", "csrf_token": token})

    await assert_refused(response, session, 0)


@pytest.mark.parametrize("task", ["", "x" * 501])
async def test_add_an_invalid_task_writes_nothing(
    client: QuartClient, session: AsyncSession, task: str
) -> None:
    token = await page_token(client)

    response = await client.post("/add", form={"task": task, "csrf_token": token})

    assert 400 <= response.status_code < 500
    assert await count_todos(session) == 0


# --- toggle and delete from the page ------------------------------------------------------


async def test_toggle_flips_done_and_back(client: QuartClient, session: AsyncSession) -> None:
    todo = await make_todo(session)
    token = await page_token(client)

    states = []
    for _ in range(2):
        response = await client.post(f"/todos/{todo.id}/toggle", form={"csrf_token": token})
        assert response.status_code == 303
        assert response.headers["Location"] == "/"
        row = await todo_row(session, todo.id)
        assert row is not None
        states.append(row["done"])

    assert states == [True, False]


async def test_delete_from_the_page(client: QuartClient, session: AsyncSession) -> None:
    todo = await make_todo(session)
    other = await make_todo(session)
    token = await page_token(client)

    response = await client.post(f"/todos/{todo.id}/delete", form={"csrf_token": token})

    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    assert [todo_id for todo_id, _, _ in await todos_in_db(session)] == [other.id]


@pytest.mark.parametrize("action", ["toggle", "delete"])
async def test_toggle_or_delete_of_an_unknown_todo_is_404(client: QuartClient, action: str) -> None:
    token = await page_token(client)

    response = await client.post(f"/todos/424242/{action}", form={"csrf_token": token})

    assert response.status_code == 404
    assert (await response.get_json())["error"]["message"] == "todo 424242 not found"


@pytest.mark.parametrize("action", ["toggle", "delete"])
async def test_toggle_or_delete_from_another_site_is_refused(
    client: QuartClient, session: AsyncSession, action: str
) -> None:
    todo = await make_todo(session)
    before = await todo_row(session, todo.id)
    token = await page_token(client)

    response = await client.post(
        f"/todos/{todo.id}/{action}", form={"csrf_token": token}, headers={"Origin": CROSS_SITE}
    )

    await assert_refused(response, session, 1)
    assert await todo_row(session, todo.id) == before


# --- exports from the page ----------------------------------------------------------------


async def test_export_from_the_page(in_process: QuartClient, session: AsyncSession) -> None:
    for task in ("one", "two", "three"):
        await make_todo(session, task=task)
    token = await page_token(in_process)

    response = await in_process.post("/export/start", form={"csrf_token": token})

    assert response.status_code == 303
    export_id = export_id_from(response.headers["Location"])
    waiting = await (await in_process.get(f"/?export={export_id}")).get_data(as_text=True)
    assert f'data-status-url="/exports/{export_id}"' in waiting
    assert "Export " in waiting

    await wait_for_export(in_process, export_id)

    done = await in_process.get(f"/?export={export_id}")
    html = await done.get_data(as_text=True)
    assert "Export complete: 3 rows." in html
    assert f'<a id="download-link" href="/exports/{export_id}/download">' in html


async def test_export_from_another_site_is_refused(
    in_process: QuartClient, session: AsyncSession
) -> None:
    token = await page_token(in_process)

    response = await in_process.post(
        "/export/start", form={"csrf_token": token}, headers={"Origin": CROSS_SITE}
    )

    assert response.status_code == 400
    assert await session.scalar(select(func.count()).select_from(Export)) == 0


async def test_page_shows_a_queued_export_without_download_link(
    client: QuartClient, session: AsyncSession
) -> None:
    export = Export(id=str(uuid.uuid4()), format="csv", status="queued")
    session.add(export)
    await session.commit()

    html = await (await client.get(f"/?export={export.id}")).get_data(as_text=True)

    assert "Export queued." in html
    assert f'<a href="/?export={export.id}">Refresh</a>' in html
    assert "download-link" not in html


async def test_page_ignores_an_unknown_export(client: QuartClient) -> None:
    response = await client.get("/?export=not-a-uuid")

    assert response.status_code == 200
    assert "data-status-url" not in await response.get_data(as_text=True)


# --- the export API -----------------------------------------------------------------------


async def start_export(client: QuartClient, body: dict[str, Any]) -> str:
    response = await client.post("/export", json=body)
    assert response.status_code == 202
    accepted = await response.get_json()
    export_id = accepted["job_id"]
    assert accepted == {
        "job_id": export_id,
        "status": "queued",
        "status_url": f"/exports/{export_id}",
    }
    assert response.headers["Location"] == f"/exports/{export_id}"
    return export_id


async def test_csv_export(in_process: QuartClient, session: AsyncSession) -> None:
    await make_todo(session, task="plain")
    await make_todo(session, task='comma, "quotes"\nand a newline', done=True)
    await make_todo(session, task="ünïcödé ✔")
    export_id = await start_export(in_process, {})

    status = await wait_for_export(in_process, export_id)

    assert set(status) == {
        "job_id",
        "status",
        "format",
        "rows",
        "rows_written",
        "rows_total",
        "created_at",
        "finished_at",
        "download_url",
    }
    assert (status["format"], status["rows"]) == ("csv", 3)
    assert status["rows_written"] == status["rows_total"] == 3
    assert status["download_url"] == f"/exports/{export_id}/download"
    download = await in_process.get(status["download_url"])
    assert download.status_code == 200
    assert download.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert download.headers["Content-Disposition"] == (
        f'attachment; filename="todos-{export_id}.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(await download.get_data(as_text=True), newline="")))
    assert [(int(row["id"]), row["task"], row["done"]) for row in rows] == [
        (todo_id, task, "true" if done else "false")
        for todo_id, task, done in await todos_in_db(session)
    ]


async def test_json_export(in_process: QuartClient, session: AsyncSession) -> None:
    made = [await make_todo(session, task=task, done=task == "b") for task in ("a", "b")]
    export_id = await start_export(in_process, {"format": "json"})

    status = await wait_for_export(in_process, export_id)
    download = await in_process.get(status["download_url"])

    assert status["format"] == "json"
    assert download.status_code == 200
    assert download.headers["Content-Type"] == "application/json"
    assert download.headers["Content-Disposition"] == (
        f'attachment; filename="todos-{export_id}.json"'
    )
    exported = json.loads(await download.get_data())
    assert [(todo["id"], todo["task"], todo["done"]) for todo in exported] == await todos_in_db(
        session
    )
    assert set(exported[0]) == TODO_KEYS
    assert datetime.fromisoformat(exported[0]["created_at"]) == made[0].created_at


async def test_export_of_no_todos(in_process: QuartClient) -> None:
    export_id = await start_export(in_process, {"format": "json"})

    status = await wait_for_export(in_process, export_id)

    assert status["rows"] == 0
    assert json.loads(await (await in_process.get(status["download_url"])).get_data()) == []


async def test_export_like_the_seeds_curl_example(in_process: QuartClient) -> None:
    response = await in_process.post(
        "/export", data="{}", headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 202
    await wait_for_export(in_process, (await response.get_json())["job_id"])


async def test_unsupported_export_format_is_422(client: QuartClient, session: AsyncSession) -> None:
    response = await client.post("/export", json={"format": "xml"})

    assert response.status_code == 422
    assert error_fields(await response.get_json()) == ["format"]
    assert await session.scalar(select(func.count()).select_from(Export)) == 0


@pytest.mark.parametrize("path", ["/exports/{id}", "/exports/{id}/download"])
@pytest.mark.parametrize("export_id", [str(uuid.UUID(int=1)), "not-a-uuid"])
async def test_unknown_export_is_404(client: QuartClient, path: str, export_id: str) -> None:
    response = await client.get(path.format(id=export_id))

    assert response.status_code == 404
    assert (await response.get_json())["error"]["message"] == f"export {export_id} not found"


async def test_download_of_an_unfinished_export_is_409(
    client: QuartClient, session: AsyncSession
) -> None:
    export = Export(id=str(uuid.uuid4()), format="csv", status="queued")
    session.add(export)
    await session.commit()

    response = await client.get(f"/exports/{export.id}/download")

    assert response.status_code == 409
    assert (await response.get_json())["error"]["status"] == 409
