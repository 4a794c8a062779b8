"""Bad input on every write route: a clear 4xx JSON error, and nothing written.

One table, one test id per case, over every route that writes: products, items, todos,
exports, the page's forms, users, articles, comments, favorites and follows. Each case runs
against the same small world (two users, an article with a tag and a comment, an item, a
todo, a product), reads every table before and after, and requires them unchanged, the
status it names, and our error shape (`{"error": {...}}`, under /api the RealWorld
`{"errors": {"body": [...], "<field>": [...]}}`) naming the offending field where there is
one.

Two more tables: valid unicode (emoji, right-to-left text, combining marks, ...) that is
accepted, with the stored text checked to be exactly what was sent; and SQL metacharacters
in every query parameter: refused where the parameter is a number or a column name, taken
literally (and so matching nothing) where it is free text.

tests/test_errors.py has the error contract itself on /items (malformed JSON, 413, 415,
NaN, nesting); this file runs the same kinds of input over every other write route.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from quart import Quart
from quart.testing import QuartClient
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from service.articles.models import Article, Comment
from service.articles.queries import create_comment
from service.items.models import Item
from service.models import metadata
from service.products.models import Product
from service.todos.models import Todo
from service.todos.queries import create_todo
from service.users.models import User
from tests.factories import (
    auth_headers,
    make_article,
    make_item,
    make_product,
    make_user,
)

JSON = {"Content-Type": "application/json"}
TEN_MEBIBYTES = 10 * 1024 * 1024
NOT_SENT = object()


@dataclass(frozen=True)
class World:
    """Rows every case can aim at; the path placeholders name them."""

    headers: dict[str, dict[str, str]]
    ids: dict[str, str]


@pytest.fixture(scope="module")
async def world(app: Quart) -> AsyncIterator[World]:
    """Made once for the module: a refused request writes nothing (each case checks that),
    so the cases can share it, and the tables are emptied once, at the end, instead of
    after each of some 400 tests."""
    async with app.extensions["database"].sessionmaker() as session:
        author = await make_user(session, username="author", email="author@example.com")
        other = await make_user(session, username="other", email="other@example.com")
        article = await make_article(session, author, tags=["dragons"], title="How to train")
        comment = await create_comment(
            session, article_id=article.id, author_id=author.id, body="hi"
        )
        todo = await create_todo(session, "water the plants")
        await session.commit()
        item = await make_item(session, name="lamp")
        product = await make_product(session, name="kettle")
    yield World(
        headers={
            "author": auth_headers(app, author),
            "other": auth_headers(app, other),
            "none": {},
        },
        ids={
            "item": str(item.id),
            "todo": str(todo.id),
            "product": str(product.id),
            "slug": article.slug,
            "comment": str(comment.id),
            "author": author.username,
            "other": other.username,
        },
    )
    names = ", ".join(f'"{table.name}"' for table in metadata.sorted_tables)
    async with app.extensions["database"].engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture
async def db_session(app: Quart, world: World) -> AsyncIterator[AsyncSession]:
    """A session to read the tables with (conftest's `session` empties them after each test)."""
    async with app.extensions["database"].sessionmaker() as session:
        yield session


@pytest.fixture
def api_client(app: Quart, world: World) -> QuartClient:
    """A client without conftest's per-test emptying of the tables."""
    return app.test_client()


async def table_contents(session: AsyncSession) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, as committed now."""
    contents = {}
    for table in metadata.sorted_tables:
        rows = (await session.execute(select(table))).all()
        contents[table.name] = sorted((tuple(row) for row in rows), key=repr)
    await session.commit()  # no transaction left open while the app writes
    return contents


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    status: int
    json: Any = NOT_SENT
    data: bytes | str | None = None
    form: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] | None = None
    auth: str = "author"  # a key of World.headers, or a whole Authorization header
    field: str | None = None  # the field the error must name


def case(label: str, *args: Any, **kwargs: Any) -> Any:
    built = Case(*args, **kwargs)
    return pytest.param(built, id=f"{built.method} {built.path}: {label}")


def request_options(bad: Case, world: World) -> dict[str, Any]:
    auth = world.headers.get(bad.auth, {"Authorization": bad.auth})
    options: dict[str, Any] = {"method": bad.method, "headers": {**auth, **bad.headers}}
    if bad.json is not NOT_SENT:
        options["json"] = bad.json
    if bad.data is not None:
        options["data"] = bad.data
    if bad.form is not None:
        options["form"] = bad.form
    if bad.query is not None:
        options["query_string"] = bad.query
    return options


async def check_error(response: Any, bad: Case, path: str) -> None:
    assert response.status_code == bad.status, await response.get_data()
    assert response.content_type == "application/json"
    body = await response.get_json()
    if path.startswith("/api/"):
        assert set(body) == {"errors"}
        errors = body["errors"]
        assert errors["body"] and all(isinstance(text, str) and text for text in errors["body"])
        if bad.field is not None:
            assert bad.field in errors, errors
        return
    assert set(body) == {"error"}
    error = body["error"]
    assert error["status"] == bad.status
    assert error["request_id"] == response.headers["X-Request-ID"]
    assert isinstance(error["message"], str) and error["message"]
    if bad.field is not None:
        assert bad.field in [detail["field"] for detail in error.get("details", [])], error


# --- every JSON write route, the same broken bodies ------------------------------------

JSON_ROUTES: list[tuple[str, str, str]] = [
    ("POST", "/products", "none"),
    ("PUT", "/items/{item}", "none"),
    ("PATCH", "/items/{item}", "none"),
    ("POST", "/todos", "none"),
    ("PUT", "/todos/{todo}", "none"),
    ("PATCH", "/todos/{todo}", "none"),
    ("POST", "/export", "none"),
    ("POST", "/api/users", "none"),
    ("POST", "/api/register", "none"),
    ("POST", "/api/users/login", "none"),
    ("POST", "/api/login", "none"),
    ("PUT", "/api/user", "author"),
    ("POST", "/api/articles", "author"),
    ("PUT", "/api/articles/{slug}", "author"),
    ("POST", "/api/articles/{slug}/comments", "author"),
]
BROKEN_BODIES: list[tuple[str, dict[str, Any], int]] = [
    ("malformed JSON", {"data": b'{"name": ', "headers": JSON}, 400),
    ("empty body", {"data": b"", "headers": JSON}, 400),
    ("trailing garbage", {"data": b"{} {}", "headers": JSON}, 400),
    ("not UTF-8", {"data": b'{"name": "caf\xe9"}', "headers": JSON}, 400),
    ("a JSON array", {"data": b"[]", "headers": JSON}, 422),
    ("a JSON string", {"data": b'"text"', "headers": JSON}, 422),
    # 50,000 arrays are 50,000 values: over MAX_JSON_VALUES, refused before parsing.
    ("deeply nested", {"data": b"[" * 50_000 + b"]" * 50_000, "headers": JSON}, 413),
    ("nested 900 deep", {"data": b"[" * 900 + b"]" * 900, "headers": JSON}, 422),
    ("10 MB", {"json": {"x": "x" * TEN_MEBIBYTES}}, 413),
    ("text/plain", {"data": b"{}", "headers": {"Content-Type": "text/plain"}}, 415),
    ("no content type", {"data": b"{}"}, 415),
]
BROKEN_BODY_CASES = [
    case(label, method, path, status, auth=auth, **options)
    for method, path, auth in JSON_ROUTES
    for label, options, status in BROKEN_BODIES
]


# --- field by field ----------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """A JSON body only raw text can carry: NaN, Infinity, a number beyond any float."""

    text: str


@dataclass(frozen=True)
class Form:
    fields: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)


PRODUCT = {"name": "p", "price": 1.0, "category": "c"}
ITEM = {"name": "i", "description": None, "quantity": 1, "price": 1.0}
USER = {"username": "newbie", "email": "newbie@example.com", "password": "long enough"}
ARTICLE = {"title": "t", "description": "d", "body": "b", "tagList": ["x"]}
NO_BODY = None
CROSS_SITE = {"Origin": "https://evil.example"}


def user(**changes: Any) -> dict[str, Any]:
    return {"user": {**USER, **changes}}


def article(**changes: Any) -> dict[str, Any]:
    return {"article": {**ARTICLE, **changes}}


# (method, path, auth) -> rows of (label, body, status, field the error names)
FIELD_TABLE: dict[tuple[str, str, str], list[tuple[str, Any, int, str | None]]] = {
    ("POST", "/products", "none"): [
        ("price as a string", {**PRODUCT, "price": "5"}, 422, "price"),
        ("price true", {**PRODUCT, "price": True}, 422, "price"),
        ("price negative", {**PRODUCT, "price": -0.01}, 422, "price"),
        ("price 1e13", {**PRODUCT, "price": 1e13}, 422, "price"),
        ("price NaN", Raw('{"name": "p", "price": NaN, "category": "c"}'), 422, "price"),
        (
            "price -Infinity",
            Raw('{"name": "p", "price": -Infinity, "category": "c"}'),
            422,
            "price",
        ),
        (
            "price 10**400",
            Raw('{"name": "p", "category": "c", "price": 1%s}' % ("0" * 400)),
            422,
            "price",
        ),
        ("name empty", {**PRODUCT, "name": ""}, 422, "name"),
        ("name 201 characters", {**PRODUCT, "name": "x" * 201}, 422, "name"),
        ("name with NUL", {**PRODUCT, "name": "a\x00b"}, 422, "name"),
        ("name a huge number", {**PRODUCT, "name": 10**30}, 422, "name"),
        ("name null", {**PRODUCT, "name": None}, 422, "name"),
        ("category missing", {"name": "p", "price": 1.0}, 422, "category"),
        ("category a list", {**PRODUCT, "category": ["c"]}, 422, "category"),
        ("extra id", {**PRODUCT, "id": 1}, 422, "id"),
    ],
    ("PUT", "/items/{item}", "none"): [
        ("quantity 2**31", {**ITEM, "quantity": 2**31}, 422, "quantity"),
        ("quantity 10**30", {**ITEM, "quantity": 10**30}, 422, "quantity"),
        ("name empty", {**ITEM, "name": ""}, 422, "name"),
        ("description missing", {"name": "i", "quantity": 1, "price": 1.0}, 422, "description"),
    ],
    ("PATCH", "/items/{item}", "none"): [
        ("quantity 1e400", Raw('{"quantity": 1e400}'), 422, "quantity"),
        ("quantity 1.5", {"quantity": 1.5}, 422, "quantity"),
        ("quantity a string", {"quantity": "1"}, 422, "quantity"),
        ("quantity negative", {"quantity": -1}, 422, "quantity"),
        ("price Infinity", Raw('{"price": Infinity}'), 422, "price"),
        ("price null", {"price": None}, 422, "price"),
        ("name with NUL", {"name": "\x00"}, 422, "name"),
        ("name a lone surrogate", Raw('{"name": "\\ud800"}'), 422, "name"),
        ("description 10001 characters", {"description": "x" * 10_001}, 422, "description"),
        ("empty", {}, 400, None),
        ("extra updated_at", {"updated_at": "2000-01-01T00:00:00Z"}, 422, "updated_at"),
    ],
    ("POST", "/todos", "none"): [
        ("task empty", {"task": ""}, 422, "task"),
        ("task 501 characters", {"task": "x" * 501}, 422, "task"),
        ("task with NUL", {"task": "a\x00"}, 422, "task"),
        ("task a number", {"task": 5}, 422, "task"),
        ("task missing", {}, 422, "task"),
        ("done on create", {"task": "t", "done": True}, 422, "done"),
    ],
    ("PUT", "/todos/{todo}", "none"): [
        ("done a string", {"task": "t", "done": "true"}, 422, "done"),
        ("done 1", {"task": "t", "done": 1}, 422, "done"),
        ("done missing", {"task": "t"}, 422, "done"),
    ],
    ("PATCH", "/todos/{todo}", "none"): [
        ("task null", {"task": None}, 422, "task"),
        ("empty", {}, 400, None),
        ("extra id", {"done": True, "id": 1}, 422, "id"),
    ],
    ("POST", "/export", "none"): [
        ("format xml", {"format": "xml"}, 422, "format"),
        ("format empty", {"format": ""}, 422, "format"),
        ("format a number", {"format": 1}, 422, "format"),
        ("extra rows", {"format": "csv", "rows": 5}, 422, "rows"),
    ],
    ("POST", "/add", "none"): [
        ("task missing", Form({}), 422, "task"),
        ("task empty", Form({"task": ""}), 422, "task"),
        ("task with NUL", Form({"task": "a\x00b"}), 422, "task"),
        ("task 501 characters", Form({"task": "x" * 501}), 422, "task"),
        ("sent as JSON", {"task": "t"}, 422, "task"),
        ("10 MB", Form({"task": "x" * TEN_MEBIBYTES}), 413, None),
        ("cross-site Origin", Form({"task": "t"}, CROSS_SITE), 400, None),
        (
            "CSRF token not the cookie's",
            Form({"task": "t", "csrf_token": "b"}, {"Cookie": "csrf_token=a"}),
            400,
            None,
        ),
    ],
    ("POST", "/todos/{todo}/toggle", "none"): [
        ("CSRF token without a cookie", Form({"csrf_token": "forged"}), 400, None),
        ("cross-site fetch", Form({}, {"Sec-Fetch-Site": "cross-site"}), 400, None),
    ],
    ("POST", "/todos/{todo}/delete", "none"): [
        ("cookie without a token", Form({}, {"Cookie": "csrf_token=a"}), 400, None),
    ],
    ("POST", "/export/start", "none"): [
        ("format xml", Form({"format": "xml"}), 422, "format"),
        ("cross-site Origin", Form({"format": "csv"}, CROSS_SITE), 400, None),
    ],
    ("POST", "/api/users", "none"): [
        ("email not an email", user(email="newbie"), 422, "email"),
        ("email with NUL", user(email="a\x00@example.com"), 422, "email"),
        ("username with a space", user(username="new bie"), 422, "username"),
        ("username with a quote", user(username="x'--"), 422, "username"),
        ("username 65 characters", user(username="x" * 65), 422, "username"),
        ("username empty", user(username=""), 422, "username"),
        ("username a number", user(username=5), 422, "username"),
        ("username with an emoji", user(username="ann📦"), 422, "username"),
        ("password 7 characters", user(password="x" * 7), 422, "password"),
        ("password 257 characters", user(password="x" * 257), 422, "password"),
        (
            "password missing",
            {"user": {"username": "n", "email": "n@example.com"}},
            422,
            "password",
        ),
        ("envelope not an object", {"user": "newbie"}, 422, None),
        ("username taken", user(username="author"), 422, "username"),
        ("email taken, other case", user(email="AUTHOR@example.com"), 422, "email"),
    ],
    ("POST", "/api/register", "none"): [
        ("email taken", {**USER, "email": "author@example.com"}, 409, "email"),
    ],
    ("POST", "/api/users/login", "none"): [
        ("email a number", {"user": {"email": 5, "password": "x"}}, 422, "email"),
    ],
    ("POST", "/api/login", "none"): [
        ("password missing", {"email": "author@example.com"}, 422, "password"),
        ("wrong password", {"email": "author@example.com", "password": "not it"}, 401, None),
    ],
    ("PUT", "/api/user", "author"): [
        ("email not an email", {"user": {"email": "nope"}}, 422, "email"),
        ("username taken", {"user": {"username": "other"}}, 422, "username"),
        ("username empty", {"user": {"username": ""}}, 422, "username"),
        ("bio 10001 characters", {"user": {"bio": "x" * 10_001}}, 422, "bio"),
        ("image with NUL", {"user": {"image": "http://x/\x00"}}, 422, "image"),
        ("password null", {"user": {"password": None}}, 422, "password"),
    ],
    ("PUT", "/api/user", "none"): [("no token", {"user": {"bio": "b"}}, 401, None)],
    ("POST", "/api/logout", "none"): [("no token", NO_BODY, 401, None)],
    ("POST", "/api/logout", "Token not-a-jwt"): [("a token that is no JWT", NO_BODY, 401, None)],
    ("POST", "/api/logout", "Basic YTpi"): [("Basic credentials", NO_BODY, 401, None)],
    ("POST", "/api/logout", "Token "): [("a scheme and no token", NO_BODY, 401, None)],
    ("POST", "/api/articles", "author"): [
        ("title empty", article(title=""), 422, "title"),
        ("title 256 characters", article(title="x" * 256), 422, "title"),
        ("body missing", {"article": {"title": "t", "description": "d"}}, 422, "body"),
        ("description null", article(description=None), 422, "description"),
        ("body with NUL", article(body="\x00"), 422, "body"),
        (
            "body a lone surrogate",
            Raw('{"article": {"title": "t", "description": "d", "body": "\\udc00"}}'),
            422,
            "body",
        ),
        ("tagList a string", article(tagList="dragons"), 422, "tagList"),
        ("tagList 51 tags", article(tagList=[f"t{n}" for n in range(51)]), 422, "tagList"),
        ("a tag a number", article(tagList=[5]), 422, "tagList"),
        ("a tag with NUL", article(tagList=["a\x00"]), 422, "tagList"),
        ("envelope a list", {"article": [ARTICLE]}, 422, None),
    ],
    ("POST", "/api/articles", "none"): [("no token", article(), 401, None)],
    ("POST", "/api/articles", "Token eyJhbGciOiJIUzI1NiJ9.e30.x"): [
        ("a forged token", article(), 401, None)
    ],
    ("PUT", "/api/articles/{slug}", "other"): [
        ("not the author", {"article": {"title": "mine now"}}, 403, None)
    ],
    ("PUT", "/api/articles/{slug}", "author"): [
        ("title empty", {"article": {"title": ""}}, 422, "title"),
        ("tagList null", {"article": {"tagList": None}}, 422, "tagList"),
    ],
    ("PUT", "/api/articles/no-such-article-1", "author"): [
        ("unknown slug", {"article": {"title": "t"}}, 404, None)
    ],
    ("DELETE", "/api/articles/{slug}", "other"): [("not the author", NO_BODY, 403, None)],
    ("DELETE", "/api/articles/{slug}", "none"): [("no token", NO_BODY, 401, None)],
    ("DELETE", "/api/articles/no-such-article-1", "author"): [("unknown slug", NO_BODY, 404, None)],
    ("DELETE", "/api/articles/a%00b", "author"): [("slug with NUL", NO_BODY, 404, None)],
    ("DELETE", "/api/articles/x' OR '1'='1", "author"): [("slug with SQL", NO_BODY, 404, None)],
    ("POST", "/api/articles/{slug}/comments", "author"): [
        ("body empty", {"comment": {"body": ""}}, 422, "body"),
        ("body 20001 characters", {"comment": {"body": "x" * 20_001}}, 422, "body"),
        ("body with NUL", {"comment": {"body": "\x00"}}, 422, "body"),
        ("envelope a string", {"comment": "hi"}, 422, None),
    ],
    ("POST", "/api/articles/{slug}/comments", "none"): [
        ("no token", {"comment": {"body": "hi"}}, 401, None)
    ],
    ("POST", "/api/articles/nope-1/comments", "author"): [
        ("unknown article", {"comment": {"body": "hi"}}, 404, None)
    ],
    ("DELETE", "/api/articles/{slug}/comments/{comment}", "other"): [
        ("not the author", NO_BODY, 403, None)
    ],
    ("DELETE", "/api/articles/nope-1/comments/{comment}", "author"): [
        ("unknown article", NO_BODY, 404, None)
    ],
    ("POST", "/api/articles/nope-1/favorite", "author"): [("unknown article", NO_BODY, 404, None)],
    ("POST", "/api/articles/{slug}/favorite", "none"): [("no token", NO_BODY, 401, None)],
    ("DELETE", "/api/articles/{slug}/favorite", "Bearer"): [("Bearer alone", NO_BODY, 401, None)],
    ("POST", "/api/profiles/{author}/follow", "author"): [("yourself", NO_BODY, 422, "username")],
    ("POST", "/api/profiles/nobody/follow", "author"): [("unknown user", NO_BODY, 404, None)],
    ("POST", "/api/profiles/{other}/follow", "none"): [("no token", NO_BODY, 401, None)],
    ("DELETE", "/api/profiles/nobody/follow", "author"): [("unknown user", NO_BODY, 404, None)],
    ("POST", "/api/profiles/a%00b/follow", "author"): [("username with NUL", NO_BODY, 404, None)],
}

# Ids in paths that are not numbers, or name nothing: a 404 for every method.
BAD_IDS = {
    "not a number": "abc",
    "a decimal": "1.5",
    "an exponent": "1e3",
    "negative": "-1",
    "zero": "0",
    "2**31": "2147483648",
    "10**20": "1" + "0" * 20,
    "with SQL": "1 OR 1=1",
}
ID_ROUTES: list[tuple[str, str, Any]] = [
    ("PUT", "/items/{id}", ITEM),
    ("PATCH", "/items/{id}", {"name": "n"}),
    ("DELETE", "/items/{id}", NO_BODY),
    ("PUT", "/todos/{id}", {"task": "t", "done": True}),
    ("DELETE", "/todos/{id}", NO_BODY),
    ("POST", "/todos/{id}/toggle", Form({})),
    ("POST", "/todos/{id}/delete", Form({})),
    ("DELETE", "/api/articles/{slug}/comments/{id}", NO_BODY),
]


def field_case(method: str, path: str, auth: str, row: tuple[str, Any, int, str | None]) -> Any:
    label, body, status, field_name = row
    options: dict[str, Any] = {"auth": auth, "field": field_name}
    if isinstance(body, Raw):
        options.update(data=body.text, headers=JSON)
    elif isinstance(body, Form):
        options.update(form=body.fields, headers=body.headers)
    elif body is not NO_BODY:
        options["json"] = body
    return case(label, method, path, status, **options)


FIELD_CASES = (
    [
        field_case(method, path, auth, row)
        for (method, path, auth), rows in FIELD_TABLE.items()
        for row in rows
    ]
    + [
        field_case(method, path.replace("{id}", bad_id), "author", (f"id {label}", body, 404, None))
        for method, path, body in ID_ROUTES
        for label, bad_id in BAD_IDS.items()
    ]
    + [
        field_case(
            "DELETE",
            "/api/articles/{slug}/comments/2147483647",
            "author",
            ("id of no comment", NO_BODY, 404, None),
        ),
    ]
)


@pytest.mark.parametrize("bad", BROKEN_BODY_CASES + FIELD_CASES)
async def test_bad_input_is_refused_and_writes_nothing(
    api_client: QuartClient, db_session: AsyncSession, world: World, bad: Case
) -> None:
    path = bad.path.format(**world.ids)
    before = await table_contents(db_session)

    response = await api_client.open(path, **request_options(bad, world))

    await check_error(response, bad, path)
    assert await table_contents(db_session) == before


# --- valid unicode is accepted, and stored exactly ---------------------------------------

UNICODE_TEXTS = {
    "emoji": "📦 box 🎁",
    "zwj sequence": "family 👩‍👩‍👧 flag 🏳️‍🌈",
    "right-to-left": "صندوق الأدوات",
    "bidi override": "abc \u202edef\u202c ghi",
    "combining marks": "Cafe\u0301 n\u0303 e\u0308",  # decomposed: kept, not normalised
    "astral letters": "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",  # noqa: RUF001 - the point of the case
    "zero-width joiner alone": "a\u200db",
}


@dataclass(frozen=True)
class Stored:
    """Where a write lands: the route, the body around the text, the column to read."""

    method: str
    path: str
    body: Any
    column: Any


STORED_TEXT_ROUTES = {
    "item name": Stored("POST", "/items", lambda text: {"name": text}, Item.__table__.c.name),
    "todo task": Stored("POST", "/todos", lambda text: {"task": text}, Todo.__table__.c.task),
    "product name": Stored(
        "POST",
        "/products",
        lambda text: {"name": text, "price": 1, "category": text},
        Product.__table__.c.name,
    ),
    "article title": Stored(
        "POST",
        "/api/articles",
        lambda text: {"article": {"title": text, "description": "d", "body": text}},
        Article.__table__.c.title,
    ),
    "comment body": Stored(
        "POST",
        "/api/articles/{slug}/comments",
        lambda text: {"comment": {"body": text}},
        Comment.__table__.c.body,
    ),
    "user bio": Stored(
        "PUT", "/api/user", lambda text: {"user": {"bio": text}}, User.__table__.c.bio
    ),
}


@pytest.mark.parametrize("text", list(UNICODE_TEXTS.values()), ids=list(UNICODE_TEXTS))
@pytest.mark.parametrize("where", list(STORED_TEXT_ROUTES))
async def test_valid_unicode_is_accepted_and_stored_exactly(
    api_client: QuartClient, db_session: AsyncSession, world: World, where: str, text: str
) -> None:
    route = STORED_TEXT_ROUTES[where]
    path = route.path.format(**world.ids)
    column = route.column
    before = set((await db_session.execute(select(column))).scalars().all())
    await db_session.commit()

    response = await api_client.open(
        path, method=route.method, json=route.body(text), headers=world.headers["author"]
    )

    assert response.status_code in (200, 201), await response.get_data()
    stored = set((await db_session.execute(select(column))).scalars().all())
    assert stored - before == {text}  # byte for byte: no normalisation, no trimming
    if where == "article title":
        slug = (await response.get_json())["article"]["slug"]
        assert slug.isascii() and slug.split("-")[-1].isdigit()


# --- SQL metacharacters in every query parameter --------------------------------------------

SQL = "' OR '1'='1' --"
QUERY_CASES = [
    # numbers and column names: refused
    case(
        "limit with SQL",
        "GET",
        "/items",
        400,
        query={"limit": "1; DROP TABLE items"},
        field="limit",
    ),
    case("limit negative", "GET", "/items", 400, query={"limit": "-1"}, field="limit"),
    case("limit 10**30", "GET", "/items", 400, query={"limit": "1" + "0" * 30}, field="limit"),
    case("offset with SQL", "GET", "/items", 400, query={"offset": "0 OR 1=1"}, field="offset"),
    case("offset 2**31", "GET", "/items", 400, query={"offset": "2147483648"}, field="offset"),
    case(
        "sort with SQL", "GET", "/items", 400, query={"sort": "id; DROP TABLE items"}, field="sort"
    ),
    case("sort a subquery", "GET", "/items", 400, query={"sort": "(SELECT 1)"}, field="sort"),
    case("sort with a quote", "GET", "/items", 400, query={"sort": "name'"}, field="sort"),
    case("name with NUL", "GET", "/items", 400, query={"name": "a\x00"}, field="name"),
    case(
        "limit a UNION", "GET", "/products", 400, query={"limit": "1 UNION SELECT 1"}, field="limit"
    ),
    case("offset negative", "GET", "/products", 400, query={"offset": "-1"}, field="offset"),
    case("done with SQL", "GET", "/todos", 400, query={"done": "true OR 1=1"}, field="done"),
    case("limit a word", "GET", "/todos", 400, query={"limit": "all"}, field="limit"),
    case(
        "limit with SQL",
        "GET",
        "/api/articles",
        422,
        query={"limit": "1;DROP TABLE articles"},
        field="limit",
    ),
    case("offset negative", "GET", "/api/articles", 422, query={"offset": "-1"}, field="offset"),
    case("limit an exponent", "GET", "/api/articles", 422, query={"limit": "1e3"}, field="limit"),
    case("tag with NUL", "GET", "/api/articles", 422, query={"tag": "\x00"}, field="tag"),
    case("limit with SQL", "GET", "/api/articles/feed", 422, query={"limit": SQL}, field="limit"),
]


@pytest.mark.parametrize("bad", QUERY_CASES)
async def test_sql_in_a_number_or_column_parameter_is_refused(
    api_client: QuartClient, db_session: AsyncSession, world: World, bad: Case
) -> None:
    before = await table_contents(db_session)

    response = await api_client.open(bad.path, **request_options(bad, world))

    await check_error(response, bad, bad.path)
    assert await table_contents(db_session) == before


# Free text: the value is data, never SQL, and LIKE's wildcards are literal characters.
FREE_TEXT_QUERIES = [
    pytest.param("/items", {"name": SQL}, id="items name: quote and comment"),
    pytest.param("/items", {"name": "%"}, id="items name: % is literal"),
    pytest.param("/items", {"name": "_"}, id="items name: _ is literal"),
    pytest.param("/items", {"name": "\\"}, id="items name: backslash"),
    pytest.param("/api/articles", {"search": SQL}, id="articles search: quote and comment"),
    pytest.param("/api/articles", {"search": "%"}, id="articles search: % is literal"),
    pytest.param("/api/articles", {"search": "_"}, id="articles search: _ is literal"),
    pytest.param("/api/articles", {"tag": SQL}, id="articles tag"),
    pytest.param("/api/articles", {"author": "x'; DROP TABLE users; --"}, id="articles author"),
    pytest.param("/api/articles", {"favorited": '" OR ""="'}, id="articles favorited"),
]


@pytest.mark.parametrize(("path", "query"), FREE_TEXT_QUERIES)
async def test_sql_in_a_free_text_parameter_matches_literally(
    api_client: QuartClient,
    db_session: AsyncSession,
    world: World,
    path: str,
    query: dict[str, str],
) -> None:
    before = await table_contents(db_session)

    response = await api_client.get(path, query_string=query, headers=world.headers["author"])

    assert response.status_code == 200
    body = await response.get_json()
    # The world has an item ("lamp") and an article ("How to train"): neither matches.
    assert body == ([] if path == "/items" else {"articles": [], "articlesCount": 0})
    assert await table_contents(db_session) == before
