"""Integrity under concurrent requests, on the real PostgreSQL (and SQLite for If-Match).

The requests run concurrently: the Quart test client runs each one as its own task on the
event loop, each with its own session and connection, so `asyncio.gather` interleaves them.
Where a race must happen rather than merely may, the test holds the row's lock itself
until every request is waiting for it (see `race_for_the_row`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any

from quart import Quart
from quart.testing import QuartClient
from quart.wrappers import Response
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from service.__main__ import migrate
from service.app import create_app
from service.articles.models import Favorite
from service.items.models import Item
from service.users.models import User
from tests.conftest import make_settings
from tests.factories import auth_headers, make_article, make_item, make_user

ITEM = {"name": "Lamp", "description": "a desk lamp", "quantity": 3, "price": 19.5}
PASSWORD = "s3cret-Passw0rd"


async def count_rows(session: AsyncSession, model: type, *where: Any) -> int:
    return await session.scalar(select(func.count()).select_from(model).where(*where)) or 0


async def item_row(session: AsyncSession, item_id: int) -> dict[str, Any] | None:
    table = Item.__table__
    row = (await session.execute(select(table).where(table.c.id == item_id))).mappings().first()
    return dict(row) if row is not None else None


def statuses(responses: Sequence[Response]) -> list[int]:
    return sorted(response.status_code for response in responses)


# --- favorites ---------------------------------------------------------------------------


async def test_fifty_users_favorite_one_article_at_once(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    author = await make_user(session)
    article = await make_article(session, author)
    readers = [await make_user(session) for _ in range(50)]

    responses = await asyncio.gather(
        *(
            client.post(f"/api/articles/{article.slug}/favorite", headers=auth_headers(app, reader))
            for reader in readers
        )
    )

    assert statuses(responses) == [200] * 50
    for response in responses:
        assert (await response.get_json())["article"]["favorited"] is True
    shown = await (await client.get(f"/api/articles/{article.slug}")).get_json()
    assert shown["article"]["favoritesCount"] == 50
    assert await count_rows(session, Favorite, Favorite.article_id == article.id) == 50


async def test_one_user_favoriting_ten_times_at_once_keeps_one_row(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    author = await make_user(session)
    reader = await make_user(session)
    article = await make_article(session, author)
    headers = auth_headers(app, reader)

    responses = await asyncio.gather(
        *(client.post(f"/api/articles/{article.slug}/favorite", headers=headers) for _ in range(10))
    )

    assert statuses(responses) == [200] * 10
    assert await count_rows(session, Favorite, Favorite.article_id == article.id) == 1


# --- items: If-Match under concurrency ---------------------------------------------------


async def lock_waiters(engine: AsyncEngine) -> int:
    """Sessions of this database waiting for a lock (a row lock shows as `transactionid`)."""
    async with engine.connect() as connection:
        return await connection.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND backend_type = 'client backend' AND wait_event_type = 'Lock'"
            )
        )


async def race_for_the_row(
    app: Quart, item_id: int, requests: Sequence[Awaitable[Response]]
) -> list[Response]:
    """Run the requests while this test holds the item's row lock, and let go only once
    every one of them waits for it: each has read the row as it was and none has written,
    the worst interleaving there is. They queue one after the other, in the order given,
    so the first one is the first to write. The lock goes with a rollback: nothing changes."""
    engine: AsyncEngine = app.extensions["database"].engine
    items = Item.__table__
    tasks: list[asyncio.Future[Response]] = []
    async with engine.connect() as holder:
        await holder.execute(select(items.c.id).where(items.c.id == item_id).with_for_update())
        for request in requests:
            tasks.append(asyncio.ensure_future(request))
            deadline = time.monotonic() + 10
            while not tasks[-1].done() and await lock_waiters(engine) < len(tasks):
                assert time.monotonic() < deadline, "the request never queued for the row lock"
                await asyncio.sleep(0.005)
        await holder.rollback()
    return list(await asyncio.gather(*tasks))


async def test_two_puts_with_the_same_if_match_one_wins_the_other_is_412(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    item = await make_item(session, name="original")
    etag = (await client.get(f"/items/{item.id}")).headers["ETag"]
    bodies = [{**ITEM, "name": "writer one"}, {**ITEM, "name": "writer two"}]

    responses = await race_for_the_row(
        app,
        item.id,
        [client.put(f"/items/{item.id}", json=body, headers={"If-Match": etag}) for body in bodies],
    )

    assert statuses(responses) == [200, 412]
    winner = next(r for r in responses if r.status_code == 200)
    loser = next(r for r in responses if r.status_code == 412)
    assert loser.content_type == "application/json"
    assert (await loser.get_json())["error"]["status"] == 412
    row = await item_row(session, item.id)
    assert row is not None and row["name"] == (await winner.get_json())["name"]
    assert (await client.get(f"/items/{item.id}")).headers["ETag"] == winner.headers["ETag"]


async def test_of_ten_mixed_writes_with_the_same_if_match_exactly_one_succeeds(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    item = await make_item(session, quantity=0)
    etag = (await client.get(f"/items/{item.id}")).headers["ETag"]
    url, condition = f"/items/{item.id}", {"If-Match": etag}
    requests = [
        client.patch(url, json={"quantity": 1}, headers=condition),
        client.delete(url, headers=condition),  # must not delete the version the PATCH made
        *(client.put(url, json={**ITEM, "quantity": n}, headers=condition) for n in range(2, 6)),
        *(client.patch(url, json={"quantity": n}, headers=condition) for n in range(6, 10)),
    ]

    responses = await race_for_the_row(app, item.id, requests)

    assert [r.status_code for r in responses] == [200] + [412] * 9
    row = await item_row(session, item.id)
    assert row is not None and row["quantity"] == 1


async def test_without_if_match_concurrent_puts_all_apply_and_the_last_one_wins_whole(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    item = await make_item(session)
    bodies = [
        {"name": f"writer {n}", "description": None, "quantity": n, "price": n} for n in (1, 2)
    ]

    responses = await race_for_the_row(
        app, item.id, [client.put(f"/items/{item.id}", json=body) for body in bodies]
    )

    assert statuses(responses) == [200, 200]
    row = await item_row(session, item.id)
    assert row is not None
    # One writer's body entirely, never a mix of both.
    assert {key: row[key] for key in bodies[0]} in bodies


async def test_if_match_holds_under_concurrency_on_sqlite(tmp_path: Path) -> None:
    settings = make_settings(database_url=f"sqlite:///{tmp_path / 'etag.db'}", redis_url=None)
    await asyncio.to_thread(migrate, settings)
    app = create_app(settings)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        created = await client.post("/items", json=ITEM)
        url, etag = created.headers["Location"], created.headers["ETag"]

        responses = await asyncio.gather(
            *(
                client.put(url, json={**ITEM, "quantity": n}, headers={"If-Match": etag})
                for n in range(5)
            )
        )

        assert statuses(responses) == [200, 412, 412, 412, 412]
        winner = next(r for r in responses if r.status_code == 200)
        current = await client.get(url)
        assert (await current.get_json())["quantity"] == (await winner.get_json())["quantity"]


# --- registration: the unique constraints under concurrency -------------------------------


def registration(username: str, email: str) -> dict[str, Any]:
    user = {"username": username, "email": email, "password": PASSWORD}
    return {"user": user}


# Each route answers a taken account in its own way: RealWorld's 422, the seed's 409.
TAKEN_STATUS = {"/api/users": 422, "/api/register": 409}


async def test_twenty_registrations_of_one_account_at_once_make_one_user(
    client: QuartClient, session: AsyncSession
) -> None:
    # Both routes at once, and the email's case differs: emails are stored lower-cased, so
    # these are all the same account.
    attempts = [
        (route, f"{'JAKE' if n % 4 < 2 else 'jake'}@example.com")
        for n, route in zip(range(20), [*TAKEN_STATUS] * 10, strict=True)
    ]

    responses = await asyncio.gather(
        *(client.post(route, json=registration("jake", email)) for route, email in attempts)
    )

    assert statuses(responses).count(201) == 1, statuses(responses)
    for (route, _), response in zip(attempts, responses, strict=True):
        if response.status_code != 201:
            assert response.status_code == TAKEN_STATUS[route], await response.get_data()
            # The same answer as when the account existed before: a key per taken field.
            errors = (await response.get_json())["errors"]
            assert errors.get("email") == errors.get("username") == ["has already been taken"], (
                route,
                errors,
            )
    assert await count_rows(session, User) == 1


async def test_concurrent_registrations_clashing_on_email_or_on_username_make_one_each(
    client: QuartClient, session: AsyncSession
) -> None:
    same_email = [registration(f"name{n}", "shared@example.com") for n in range(5)]
    same_username = [registration("shared", f"user{n}@example.com") for n in range(5)]

    responses = await asyncio.gather(
        *(client.post("/api/users", json=body) for body in [*same_email, *same_username])
    )

    assert statuses(responses) == [201, 201] + [422] * 8
    for body, response in zip([*same_email, *same_username], responses, strict=True):
        if response.status_code == 422:
            errors = (await response.get_json())["errors"]
            taken = "email" if body in same_email else "username"
            assert set(errors) == {"body", taken}, errors
    assert await count_rows(session, User, User.email == "shared@example.com") == 1
    assert await count_rows(session, User, User.username == "shared") == 1
    assert await count_rows(session, User) == 2
