"""The todo page's list in pages, and its form posts' errors as HTML for browsers.

(The rest of the page's tests are in tests/test_todos.py.)
"""

from __future__ import annotations

from typing import Any

import pytest
from quart import Quart, jsonify
from quart.testing import QuartClient
from sqlalchemy.ext.asyncio import AsyncSession

from service.todos.models import Todo
from service.todos.page_errors import error_as_html
from service.todos.pages import CONTENT_SECURITY_POLICY, PAGE_SIZE
from tests.test_todos import CROSS_SITE, TodoPage, count_todos, page_token, todos_in_db

# What Chromium sends with a form post or a page load.
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


class PagedTodoPage(TodoPage):
    """The todo page, with its pager links (rel -> href) and the order of its parts."""

    def __init__(self, html: str) -> None:
        self.links: dict[str, list[str]] = {}
        self.parts: list[str] = []
        self.html = html
        super().__init__(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "a" and attributes.get("rel"):
            self.links.setdefault(attributes["rel"] or "", []).append(attributes["href"] or "")
        if attributes.get("id") in {"export-form", "todo-count", "todos"}:
            self.parts.append(attributes["id"] or "")
        super().handle_starttag(tag, attrs)


async def make_todos(session: AsyncSession, count: int) -> list[int]:
    """`count` todos, task "todo <n>" in order of creation; their ids."""
    todos = [Todo(task=f"todo {number}", done=False) for number in range(1, count + 1)]
    session.add_all(todos)
    await session.commit()
    return [todo.id for todo in todos]


async def open_page(client: QuartClient, query: str = "") -> PagedTodoPage:
    response = await client.get(f"/{query}")
    assert response.status_code == 200
    return PagedTodoPage(await response.get_data(as_text=True))


# --- the list in pages ----------------------------------------------------------------------


async def test_the_list_is_paged_newest_first_with_the_total(
    client: QuartClient, session: AsyncSession
) -> None:
    ids = await make_todos(session, PAGE_SIZE + 3)
    newest_first = ids[::-1]

    first = await open_page(client)
    second = await open_page(client, "?page=2")

    assert [todo["id"] for todo in first.todos] == newest_first[:PAGE_SIZE]
    assert [todo["id"] for todo in second.todos] == newest_first[PAGE_SIZE:]
    for page in (first, second):
        assert f"{PAGE_SIZE + 3} todos" in page.html
        assert "of 2" in page.html
    assert first.links == {"next": ["/?page=2", "/?page=2"]}  # above and below the list
    assert second.links == {"prev": ["/", "/"]}


async def test_one_page_has_no_pager_and_counts_one_todo(
    client: QuartClient, session: AsyncSession
) -> None:
    await make_todos(session, 1)

    page = await open_page(client)

    assert page.links == {}
    assert "1 todo</p>" in page.html


async def test_the_export_form_comes_before_the_list(
    client: QuartClient, session: AsyncSession
) -> None:
    await make_todos(session, 2)

    page = await open_page(client)

    assert page.parts == ["export-form", "todo-count", "todos"]


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        ("?page=0", 1),
        ("?page=-3", 1),
        ("?page=abc", 1),
        ("?page=" + "9" * 5000, 1),  # too many digits for int(): as if absent
        ("?page=3", 2),  # past the end: the last page
        ("?page=" + "9" * 100, 2),
    ],
)
async def test_a_page_number_out_of_range_shows_the_nearest_page(
    client: QuartClient, session: AsyncSession, query: str, shown: int
) -> None:
    await make_todos(session, PAGE_SIZE + 1)

    page = await open_page(client, query)

    assert f"Page {shown} of 2" in page.html
    assert len(page.todos) == (PAGE_SIZE if shown == 1 else 1)


@pytest.mark.parametrize("action", ["toggle", "delete"])
async def test_toggle_and_delete_return_to_the_page_they_were_on(
    client: QuartClient, session: AsyncSession, action: str
) -> None:
    ids = await make_todos(session, PAGE_SIZE + 1)
    token = await page_token(client)
    second = await open_page(client, "?page=2")
    assert [todo["id"] for todo in second.todos] == [ids[0]]

    response = await client.post(
        f"/todos/{ids[0]}/{action}", form={"csrf_token": token, "page": "2"}
    )

    assert response.status_code == 303
    assert response.headers["Location"] == "/?page=2"
    assert 'name="page" value="2"' in second.html  # the page's forms send it


# --- errors of the form posts -----------------------------------------------------------------


async def assert_html_error(response: Any, status: int, message: str) -> str:
    assert response.status_code == status
    assert response.content_type == "text/html; charset=utf-8"
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["X-Frame-Options"] == "DENY"
    html = await response.get_data(as_text=True)
    assert message in html
    assert '<a id="back-link" href="/">' in html
    assert "<script" not in html and "style=" not in html
    return html


@pytest.mark.parametrize(
    ("task", "why"),
    [("", "at least 1 character"), ("x" * 501, "at most 500 characters")],
    ids=["empty", "too long"],
)
async def test_an_invalid_task_from_a_browser_gets_an_html_page(
    client: QuartClient, session: AsyncSession, task: str, why: str
) -> None:
    token = await page_token(client)

    response = await client.post(
        "/add", form={"task": task, "csrf_token": token}, headers={"Accept": BROWSER_ACCEPT}
    )

    html = await assert_html_error(response, 422, "invalid request body: task")
    assert f"request {response.headers['X-Request-ID']}" in html
    assert f"<li><code>task</code>: String should have {why}</li>" in html
    assert await count_todos(session) == 0


async def test_a_refused_form_from_a_browser_gets_an_html_page(
    client: QuartClient, session: AsyncSession
) -> None:
    token = await page_token(client)

    response = await client.post(
        "/add",
        form={"task": "forged", "csrf_token": token},
        headers={"Accept": BROWSER_ACCEPT, "Origin": CROSS_SITE},
    )

    await assert_html_error(response, 400, "cross-site form submissions are refused")
    assert await count_todos(session) == 0


async def test_toggle_of_an_unknown_todo_from_a_browser_gets_an_html_page(
    client: QuartClient,
) -> None:
    token = await page_token(client)

    response = await client.post(
        "/todos/424242/toggle", form={"csrf_token": token}, headers={"Accept": BROWSER_ACCEPT}
    )

    await assert_html_error(response, 404, "todo 424242 not found")


@pytest.mark.parametrize(
    "accept",
    [
        pytest.param("*/*", id="curl"),
        pytest.param(None, id="no Accept"),
        pytest.param("application/json", id="JSON"),
        pytest.param("application/json, text/html;q=0.5", id="JSON preferred"),
    ],
)
async def test_api_clients_of_the_form_routes_keep_json_errors(
    client: QuartClient, session: AsyncSession, accept: str | None
) -> None:
    headers = {"Accept": accept} if accept else {}

    response = await client.post("/add", form={"task": ""}, headers=headers)

    assert response.status_code == 422
    assert response.content_type == "application/json"
    assert (await response.get_json())["error"]["message"] == "invalid request body: task"
    assert await todos_in_db(session) == []


async def test_a_valid_add_from_a_browser_keeps_its_redirect(
    client: QuartClient, session: AsyncSession
) -> None:
    response = await client.post(
        "/add", form={"task": "from curl"}, headers={"Accept": BROWSER_ACCEPT}
    )

    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    assert [task for _, task, _ in await todos_in_db(session)] == ["from curl"]


async def test_the_error_page_escapes_the_message(app: Quart) -> None:
    async with app.test_request_context("/add", method="POST", headers={"Accept": BROWSER_ACCEPT}):
        error = {"status": 400, "message": "<script>alert(1)</script>", "request_id": "<b>"}
        json_response = jsonify({"error": error})
        json_response.status_code = 400

        response = await error_as_html(json_response)

        html = await response.get_data(as_text=True)
    assert response.status_code == 400
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html and "<b>" not in html
