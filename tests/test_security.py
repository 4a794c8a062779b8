"""Security headers (the page's policy, nosniff everywhere), the page's CSRF checks on
every form route, and CORS per setting: listed and unlisted origins, the defaults of
development and production, credentials."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html.parser import HTMLParser
from http.cookies import SimpleCookie
from typing import Any

import pytest
from quart import Quart
from quart.testing import QuartClient
from quart.wrappers import Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.app import create_app
from service.config import ConfigError, load_settings
from service.exports.models import Export
from service.todos.models import Todo
from tests.conftest import make_settings

PRODUCTION_SECRET = "a-real-secret-for-production-tests-" + "x" * 16
LISTED = "https://app.example"
UNLISTED = "https://evil.example"


def directives(policy: str) -> dict[str, set[str]]:
    parsed = {}
    for directive in policy.split(";"):
        name, *values = directive.split()
        parsed[name] = set(values)
    return parsed


class InlineCode(HTMLParser):
    """What a Content-Security-Policy without 'unsafe-inline' would block on a page."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.blocked: list[str] = []
        self.script_sources: list[str] = []
        self._in_inline_script = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        for name, value in attributes.items():
            if name.startswith("on") or name == "style":
                self.blocked.append(f"<{tag} {name}=...>")
            if value and value.strip().lower().startswith("javascript:"):
                self.blocked.append(f"<{tag} {name}=javascript:...>")
        if tag == "style":
            self.blocked.append("<style>")
        if tag == "script":
            if attributes.get("src"):
                self.script_sources.append(attributes["src"] or "")
            else:
                self._in_inline_script = True

    def handle_endtag(self, tag: str) -> None:
        self._in_inline_script = False

    def handle_data(self, data: str) -> None:
        if self._in_inline_script and data.strip():
            self.blocked.append("<script> with inline code")


async def make_todo(session: AsyncSession, task: str = "a task") -> Todo:
    todo = Todo(task=task, done=False)
    session.add(todo)
    await session.commit()
    return todo


async def stored_state(session: AsyncSession) -> tuple[list[tuple[int, str, bool]], int]:
    """Every todo as stored, and the number of exports: what a refused post must not change."""
    table = Todo.__table__
    todos = await session.execute(select(table.c.id, table.c.task, table.c.done).order_by("id"))
    exports = await session.scalar(select(func.count()).select_from(Export)) or 0
    return [tuple(row) for row in todos], exports  # type: ignore[misc]


async def open_page(client: QuartClient) -> str:
    """Open the page as a browser does: the client keeps the cookie; returns the token."""
    response = await client.get("/")
    assert response.status_code == 200
    return SimpleCookie(response.headers["Set-Cookie"])["csrf_token"].value


# --- the page's headers -------------------------------------------------------------------


def assert_page_headers(response: Response) -> None:
    policy = directives(response.headers["Content-Security-Policy"])
    assert policy["default-src"] == {"'none'"}
    assert policy["script-src"] == {"'self'"}  # no 'unsafe-inline', no 'unsafe-eval'
    assert policy["style-src"] == {"'self'"}
    assert policy["frame-ancestors"] == {"'none'"}
    assert policy["form-action"] == {"'self'"}
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"


async def test_the_page_sends_its_security_headers(client: QuartClient) -> None:
    response = await client.get("/")

    assert response.status_code == 200
    assert_page_headers(response)


async def test_the_pages_redirects_and_errors_send_them_too(
    client: QuartClient, session: AsyncSession
) -> None:
    token = await open_page(client)

    added = await client.post("/add", form={"task": "a task", "csrf_token": token})
    refused = await client.post("/add", form={"task": "a task", "csrf_token": "wrong"})
    unknown = await client.post("/todos/424242/toggle", form={"csrf_token": token})

    assert (added.status_code, refused.status_code, unknown.status_code) == (303, 400, 404)
    for response in (added, refused, unknown):
        assert_page_headers(response)


async def test_the_page_has_nothing_inline_for_the_policy_to_block(
    client: QuartClient, session: AsyncSession
) -> None:
    """Every branch of the template rendered: todos, and an export with its status."""
    await make_todo(session, task="<b onclick=alert(1)>x</b>")
    export = Export(id=str(uuid.uuid4()), format="csv", status="complete", rows=1)
    session.add(export)
    await session.commit()

    response = await client.get(f"/?export={export.id}")

    page = InlineCode(await response.get_data(as_text=True))
    assert page.blocked == []
    assert page.script_sources == ["/static/app.js"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/articles", 200),
        ("GET", "/products", 200),
        ("GET", "/todos", 200),
        ("POST", "/api/users/login", 401),
        ("GET", "/no/such/page", 404),
        ("GET", "/static/app.js", 200),
        ("GET", "/healthz", 200),
    ],
)
async def test_every_response_says_nosniff(
    client: QuartClient, method: str, path: str, status: int
) -> None:
    body = {"user": {"email": "nobody@example.com", "password": "wrong"}}
    response = await client.open(path, method=method, json=body if method == "POST" else None)

    assert response.status_code == status
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_json_responses_carry_no_page_policy(client: QuartClient) -> None:
    """The policy is the page's: /docs (inline scripts) and JSON do not get it."""
    response = await client.get("/api/articles")

    assert "Content-Security-Policy" not in response.headers


# --- CSRF on every form route ---------------------------------------------------------------

FORM_ROUTES = ["/add", "/todos/{id}/toggle", "/todos/{id}/delete", "/export/start"]


def test_every_form_route_of_the_page_is_in_the_list(app: Quart) -> None:
    """A new form route must be added to the CSRF test below."""
    posted = {
        rule.rule.replace("<id:todo_id>", "{id}")
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("pages.") and "POST" in (rule.methods or ())
    }

    assert posted == set(FORM_ROUTES)


@pytest.mark.parametrize("route", FORM_ROUTES)
@pytest.mark.parametrize(
    "sent",
    [
        pytest.param({}, id="no token"),
        pytest.param({"csrf_token": "not-the-token"}, id="wrong token"),
        pytest.param({"csrf_token": ""}, id="empty token"),
    ],
)
async def test_a_form_post_without_the_right_token_is_refused_and_writes_nothing(
    client: QuartClient, session: AsyncSession, route: str, sent: dict[str, str]
) -> None:
    """From a browser that has opened the page (it holds the cookie)."""
    todo = await make_todo(session)
    await open_page(client)
    before = await stored_state(session)

    response = await client.post(
        route.format(id=todo.id),
        form={"task": "forged", "format": "csv", **sent},
        headers={"Sec-Fetch-Site": "same-origin"},
    )

    assert response.status_code == 400
    assert "CSRF" in (await response.get_json())["error"]["message"]
    assert await stored_state(session) == before


# --- CORS ---------------------------------------------------------------------------------


@asynccontextmanager
async def app_with(**overrides: Any) -> AsyncIterator[Quart]:
    app = create_app(make_settings(secret_key=PRODUCTION_SECRET, **overrides))
    async with app.test_app():
        yield app


async def cross_origin(app: Quart, kind: str, origin: str, path: str = "/api/articles") -> Response:
    client = app.test_client()
    if kind == "preflight":
        return await client.options(
            path,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
    return await client.get(path, headers={"Origin": origin})


CORS_CASES = [
    # settings, the request's Origin, the Access-Control-Allow-Origin and -Credentials sent
    pytest.param({"app_env": "development"}, LISTED, "*", None, id="development default"),
    pytest.param({"app_env": "test"}, UNLISTED, "*", None, id="test default"),
    pytest.param({"app_env": "production"}, LISTED, None, None, id="production default"),
    pytest.param(
        {"app_env": "production", "cors_origins": f"{LISTED}, https://admin.example"},
        LISTED,
        LISTED,
        None,
        id="listed origin",
    ),
    pytest.param(
        {"app_env": "production", "cors_origins": LISTED}, UNLISTED, None, None, id="unlisted"
    ),
    pytest.param(
        {"app_env": "production", "cors_origins": LISTED, "cors_allow_credentials": True},
        LISTED,
        LISTED,
        "true",
        id="listed origin with credentials",
    ),
    pytest.param(
        {"app_env": "production", "cors_origins": LISTED, "cors_allow_credentials": True},
        UNLISTED,
        None,
        None,
        id="unlisted origin with credentials",
    ),
    pytest.param(
        {"app_env": "development", "cors_origins": "*"}, UNLISTED, "*", None, id="explicit *"
    ),
]


@pytest.mark.parametrize("kind", ["preflight", "simple"])
@pytest.mark.parametrize(("overrides", "origin", "allowed", "credentials"), CORS_CASES)
async def test_cors(
    clean_tables: None,
    kind: str,
    overrides: dict[str, Any],
    origin: str,
    allowed: str | None,
    credentials: str | None,
) -> None:
    async with app_with(**overrides) as app:
        response = await cross_origin(app, kind, origin)

    assert response.status_code == 200
    assert response.headers.get("Access-Control-Allow-Origin") == allowed
    assert response.headers.get("Access-Control-Allow-Credentials") == credentials
    if allowed is None:
        assert "Access-Control-Allow-Methods" not in response.headers
        return
    if allowed != "*":  # an answer that depends on the Origin must say so to caches
        assert "origin" in response.headers["Vary"].lower()
    if kind == "preflight":
        methods = response.headers["Access-Control-Allow-Methods"]
        assert {"GET", "POST", "PUT", "DELETE"} <= {m.strip() for m in methods.split(",")}
        allowed_headers = response.headers["Access-Control-Allow-Headers"].lower()
        assert {"authorization", "content-type"} <= {h.strip() for h in allowed_headers.split(",")}
    else:
        exposed = response.headers["Access-Control-Expose-Headers"].lower()
        assert {"x-request-id", "traceparent", "retry-after"} <= {
            h.strip() for h in exposed.split(",")
        }


@pytest.mark.parametrize("path", ["/products", "/api/users/login"])
async def test_production_without_cors_origins_allows_no_origin_anywhere(
    clean_tables: None, path: str
) -> None:
    async with app_with(app_env="production") as app:
        response = await cross_origin(app, "preflight", LISTED, path)

    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize(
    "origins", ["", "*", "https://app.example, *"], ids=["no origins", "star", "star in list"]
)
def test_credentials_without_listed_origins_stop_start_up(
    monkeypatch: pytest.MonkeyPatch, origins: str
) -> None:
    monkeypatch.setenv("CORS_ALLOW_CREDENTIALS", "true")
    monkeypatch.setenv("CORS_ORIGINS", origins)

    with pytest.raises(ConfigError, match="CORS_ALLOW_CREDENTIALS"):
        load_settings()
