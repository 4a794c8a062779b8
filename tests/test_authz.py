"""Who may call each write route: its owner, another user, or nobody (anonymous).

One row per write route of the app (every POST, PUT, PATCH and DELETE in `app.url_map`);
`test_every_write_route_has_a_row` fails when a route is added without one. The kinds:

- author only (the article's or the comment's author): owner 2xx, another user 403,
  anonymous 401 (README: "a valid token that is not the owner's a 403"; RealWorld alike);
- any user, acting on the caller's own data (favorites, follows, the user, the token):
  owner 2xx, another user 2xx but only on their own rows, anonymous 401;
- public by design (README: products, items, todos, exports, the page, register and
  login carry no owner): everyone gets the same answer, a token changes nothing.

After every refused call the whole database is as it was; another user's call never
changes the owner's rows; the owner's own call on a token route does change them (so the
token really is what decides).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from quart import Quart
from quart.testing import QuartClient
from quart.wrappers import Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.articles.models import Article, Comment, Favorite
from service.articles.queries import create_article
from service.auth import decode_token, hash_password
from service.items.models import Item
from service.models import metadata
from service.todos.models import Todo
from service.users.models import Follow, User
from tests.conftest import empty_tables
from tests.factories import FACTORY_PASSWORD, token_for

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
OWNER, OTHER, ANONYMOUS = "owner", "other user", "anonymous"
CALLERS = (OWNER, OTHER, ANONYMOUS)
REFUSED = frozenset({401, 403})


@dataclass(frozen=True)
class Row:
    method: str
    rule: str  # as in app.url_map
    path: str  # the URL, with the scene's values in braces
    kind: str  # "author only", "any user" or "public"
    success: int  # the status of an allowed call
    body: Any = None
    form: dict[str, str] | None = None
    writes: bool = True  # an allowed call changes the database

    def expected(self, caller: str) -> int:
        if self.kind == "public":
            return self.success
        if caller == ANONYMOUS:
            return 401
        if caller == OTHER and self.kind == "author only":
            return 403
        return self.success


def author_only(method: str, rule: str, path: str, success: int, **extra: Any) -> Row:
    return Row(method, rule, path, "author only", success, **extra)


def any_user(method: str, rule: str, path: str, success: int, **extra: Any) -> Row:
    return Row(method, rule, path, "any user", success, **extra)


def public(method: str, rule: str, path: str, success: int, **extra: Any) -> Row:
    return Row(method, rule, path, "public", success, **extra)


ARTICLE = {"article": {"title": "New", "description": "d", "body": "b", "tagList": ["t"]}}
# Strings in braces are filled in from the scene (see Scene.fill).
REGISTRATION = {
    "user": {"username": "{newbie}", "email": "{newbie}@example.com", "password": "pw-123456"}
}
LOGIN = {"user": {"email": "{owner_email}", "password": FACTORY_PASSWORD}}
ITEM = {"name": "Lamp", "description": None, "quantity": 1, "price": 2.0}

MATRIX = [
    # articles and comments: only their author may change them
    author_only(
        "PUT",
        "/api/articles/<slug>",
        "/api/articles/{slug}",
        200,
        body={"article": {"title": "Changed"}},
    ),
    author_only("DELETE", "/api/articles/<slug>", "/api/articles/{slug}", 204),
    author_only(
        "DELETE",
        "/api/articles/<slug>/comments/<id:comment_id>",
        "/api/articles/{slug}/comments/{comment_id}",
        204,
    ),
    # any user, on their own rows
    any_user("POST", "/api/articles", "/api/articles", 201, body=ARTICLE),
    any_user(
        "POST",
        "/api/articles/<slug>/comments",
        "/api/articles/{slug}/comments",
        200,
        body={"comment": {"body": "hi"}},
    ),
    any_user("POST", "/api/articles/<slug>/favorite", "/api/articles/{fresh_slug}/favorite", 200),
    any_user("DELETE", "/api/articles/<slug>/favorite", "/api/articles/{slug}/favorite", 200),
    any_user("POST", "/api/profiles/<username>/follow", "/api/profiles/{stranger}/follow", 200),
    any_user("DELETE", "/api/profiles/<username>/follow", "/api/profiles/{followed}/follow", 200),
    any_user("PUT", "/api/user", "/api/user", 200, body={"user": {"bio": "changed"}}),
    any_user("POST", "/api/logout", "/api/logout", 200),
    # public by design
    public("POST", "/api/users", "/api/users", 201, body=REGISTRATION),
    public("POST", "/api/register", "/api/register", 201, body=REGISTRATION),
    public("POST", "/api/users/login", "/api/users/login", 200, body=LOGIN, writes=False),
    public("POST", "/api/login", "/api/login", 200, body=LOGIN, writes=False),
    public("POST", "/items", "/items", 201, body=ITEM),
    public("PUT", "/items/<id:item_id>", "/items/{item_id}", 200, body=ITEM),
    public("PATCH", "/items/<id:item_id>", "/items/{item_id}", 200, body={"quantity": 9}),
    public("DELETE", "/items/<id:item_id>", "/items/{item_id}", 204),
    public(
        "POST", "/products", "/products", 201, body={"name": "p", "price": 1.0, "category": "c"}
    ),
    public("POST", "/todos", "/todos", 201, body={"task": "new"}),
    public("PUT", "/todos/<id:todo_id>", "/todos/{todo_id}", 200, body={"task": "t", "done": True}),
    public("PATCH", "/todos/<id:todo_id>", "/todos/{todo_id}", 200, body={"done": True}),
    public("DELETE", "/todos/<id:todo_id>", "/todos/{todo_id}", 204),
    public("POST", "/export", "/export", 202, body={}),
    public("POST", "/add", "/add", 303, form={"task": "from the page"}),
    public("POST", "/todos/<id:todo_id>/toggle", "/todos/{todo_id}/toggle", 303, form={}),
    public("POST", "/todos/<id:todo_id>/delete", "/todos/{todo_id}/delete", 303, form={}),
    public("POST", "/export/start", "/export/start", 303, form={"format": "csv"}),
]


def write_routes(app: Quart) -> set[tuple[str, str]]:
    return {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        for method in (rule.methods or set()) & WRITE_METHODS
    }


def test_every_write_route_has_a_row(app: Quart) -> None:
    rows = [(row.method, row.rule) for row in MATRIX]
    assert len(rows) == len(set(rows)), "a route has two rows"
    assert write_routes(app) - set(rows) == set(), "write routes without a row in MATRIX"
    assert set(rows) - write_routes(app) == set(), "rows for routes that do not exist"


# --- the scene every call is made in -------------------------------------------------------


@dataclass
class Scene:
    """The owner wrote `article` and `comment`; the owner and the other user both favorite
    `article` and follow `followed` (so an unfavorite or unfollow has a row of each to
    pick from); `stranger` wrote `fresh_article`, which nobody favorites, and nobody
    follows them."""

    owner: User
    other: User
    followed: User
    stranger: User
    article: Article
    fresh_article: Article
    comment: Comment
    item: Item
    todo: Todo
    tokens: dict[str, str] = field(default_factory=dict)
    newbie: str = field(default_factory=lambda: f"newbie{next(_newbies)}")

    def fill(self, template: Any) -> Any:
        """The template with the scene's values in place of `{name}`, in strings and in
        the strings of a JSON body."""
        if isinstance(template, dict):
            return {key: self.fill(value) for key, value in template.items()}
        if not isinstance(template, str):
            return template
        return template.format(
            slug=self.article.slug,
            fresh_slug=self.fresh_article.slug,
            comment_id=self.comment.id,
            followed=self.followed.username,
            stranger=self.stranger.username,
            item_id=self.item.id,
            todo_id=self.todo.id,
            owner_email=self.owner.email,
            newbie=self.newbie,
        )


_newbies = itertools.count(1)


_scene_numbers = itertools.count(1)
_password_hashes: dict[str, str] = {}


async def make_scene(app: Quart, session: AsyncSession) -> Scene:
    """Made in one transaction: a commit per row would cost more than the call tested."""
    if not _password_hashes:
        _password_hashes[FACTORY_PASSWORD] = await hash_password(FACTORY_PASSWORD)
    number = next(_scene_numbers)
    owner, other, followed, stranger = users = [
        User(
            username=f"{role}{number}",
            email=f"{role}{number}@example.com",
            password_hash=_password_hashes[FACTORY_PASSWORD],
        )
        for role in ("owner", "other", "followed", "stranger")
    ]
    session.add_all(users)
    await session.flush()
    article, fresh_article = [
        await create_article(
            session, author_id=author.id, title=title, description="d", body="b", tags=["scene"]
        )
        for author, title in ((owner, "The owner's"), (stranger, "The stranger's"))
    ]
    comment = Comment(article_id=article.id, author_id=owner.id, body="the owner's comment")
    item = Item(name="an item", quantity=1, price=1.0)
    todo = Todo(task="a todo")
    session.add_all([comment, item, todo])
    for user in (owner, other):
        session.add(Favorite(user_id=user.id, article_id=article.id))
        session.add(Follow(follower_id=user.id, followed_id=followed.id))
    await session.commit()
    scene = Scene(owner, other, followed, stranger, article, fresh_article, comment, item, todo)
    scene.tokens = {OWNER: token_for(app, owner), OTHER: token_for(app, other)}
    return scene


# Every row of every table in one round trip (PostgreSQL): the table's name and the row as
# JSON, fresh from the database rather than the session's objects.
ALL_ROWS = text(
    " UNION ALL ".join(
        f"SELECT '{table.name}' AS table_name, row_to_json(r)::text AS row FROM \"{table.name}\" r"
        for table in metadata.sorted_tables
    )
)
Snapshot = dict[str, list[dict[str, Any]]]


async def database_rows(session: AsyncSession) -> Snapshot:
    snapshot: Snapshot = {table.name: [] for table in metadata.sorted_tables}
    for table_name, row in (await session.execute(ALL_ROWS)).all():
        snapshot[table_name].append(json.loads(row))
    for rows in snapshot.values():
        rows.sort(key=repr)
    return snapshot


def owner_rows(app: Quart, snapshot: Snapshot, scene: Scene) -> dict[str, list[dict[str, Any]]]:
    """What belongs to the owner: their user row, articles, comments, favorites, follows,
    and the revocation of their token if there is one."""
    owner_id = scene.owner.id
    jti = decode_token(app.extensions["settings"], scene.tokens[OWNER]).jti
    owned_by = {
        "users": ("id", owner_id),
        "articles": ("author_id", owner_id),
        "comments": ("author_id", owner_id),
        "favorites": ("user_id", owner_id),
        "follows": ("follower_id", owner_id),
        "revoked_tokens": ("jti", jti),
    }
    return {
        table: [row for row in snapshot[table] if row[column] == value]
        for table, (column, value) in owned_by.items()
    }


# Each call from an address of its own: the cases share the tables, and a client's second
# identical export while the first is pending gets that one back (nothing written).
_CLIENT_ADDRESSES = (f"198.51.100.{host}" for host in itertools.cycle(range(1, 255)))


async def call(client: QuartClient, scene: Scene, row: Row, caller: str) -> Response:
    options: dict[str, Any] = {
        "method": row.method,
        "headers": {},
        "scope_base": {"client": (next(_CLIENT_ADDRESSES), 40000)},
    }
    if caller in scene.tokens:
        options["headers"]["Authorization"] = f"Token {scene.tokens[caller]}"
    if row.form is not None:
        options["form"] = row.form
    elif row.body is not None:  # json=None would send `null`
        options["json"] = scene.fill(row.body)
    return await client.open(scene.fill(row.path), **options)


# The cases share the tables (each makes its own users and rows, and compares only before
# and after its own call), which are emptied once after the last: a TRUNCATE per case
# would cost more than all the cases together.
@pytest.fixture(scope="module")
async def tables_emptied_at_the_end(app: Quart) -> AsyncIterator[None]:
    yield
    await empty_tables(app)


@pytest.fixture
async def matrix_session(
    app: Quart, tables_emptied_at_the_end: None
) -> AsyncIterator[AsyncSession]:
    async with app.extensions["database"].sessionmaker() as session:
        yield session


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("row", MATRIX, ids=[f"{row.method} {row.rule}" for row in MATRIX])
async def test_write_route_authorization(
    app: Quart, matrix_session: AsyncSession, row: Row, caller: str
) -> None:
    session, client = matrix_session, app.test_client()
    scene = await make_scene(app, session)
    database_before = await database_rows(session)
    owner_before = owner_rows(app, database_before, scene)

    response = await call(client, scene, row, caller)

    expected = row.expected(caller)
    assert response.status_code == expected, await response.get_data(as_text=True)
    database_after = await database_rows(session)
    owner_after = owner_rows(app, database_after, scene)
    if expected in REFUSED:
        assert set(await response.get_json()) == {"errors"}  # the RealWorld error shape
        assert database_after == database_before, "a refused call changed the database"
    elif row.writes:
        assert database_after != database_before, "an allowed call changed nothing"
    if caller == OTHER:
        assert owner_after == owner_before, "another user's call changed the owner's rows"
    if caller == OWNER and row.kind != "public":
        assert owner_after != owner_before, "the owner's call did not act on the owner's rows"
