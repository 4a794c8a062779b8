"""Article lists cost a constant number of queries; favorites stay exact under concurrency."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from quart import Quart
from quart.testing import QuartClient
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import auth_headers, favorite, follow_user, make_article, make_user


@contextmanager
def counted_statements(app: Quart) -> Iterator[list[str]]:
    engine = app.extensions["database"].engine.sync_engine
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


async def test_an_article_page_costs_the_same_queries_whatever_its_size(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    reader = await make_user(session)
    authors = [await make_user(session) for _ in range(4)]
    for index in range(24):
        author = authors[index % 4]
        article = await make_article(session, author, tags=[f"tag{index % 5}", "common"])
        if index % 2:
            await favorite(session, reader, article)
    await follow_user(session, reader, authors[0])
    headers = auth_headers(app, reader)

    counts = {}
    for limit in (1, 5, 20):
        with counted_statements(app) as statements:
            response = await client.get(f"/api/articles?limit={limit}", headers=headers)
        body = await response.get_json()
        assert len(body["articles"]) == limit
        assert body["articlesCount"] == 24
        assert all(article["tagList"] for article in body["articles"])
        counts[limit] = len(statements)

    assert counts[1] == counts[5] == counts[20]
    assert counts[20] <= 5  # revocation check, page, count, tags
    # The page carries the viewer's state, not a default.
    favorited = [article["favorited"] for article in body["articles"]]
    assert True in favorited and False in favorited
    following = {a["author"]["username"]: a["author"]["following"] for a in body["articles"]}
    assert following[authors[0].username] is True
    assert following[authors[1].username] is False


async def test_the_feed_costs_a_constant_number_of_queries(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    reader = await make_user(session)
    for _ in range(3):
        author = await make_user(session)
        await follow_user(session, reader, author)
        for _ in range(4):
            await make_article(session, author, tags=["x"])

    counts = []
    for limit in (2, 12):
        with counted_statements(app) as statements:
            response = await client.get(
                f"/api/articles/feed?limit={limit}", headers=auth_headers(app, reader)
            )
        assert len((await response.get_json())["articles"]) == limit
        counts.append(len(statements))
    assert counts[0] == counts[1]


async def test_search_can_use_the_trigram_indexes(session: AsyncSession) -> None:
    names = set(
        (
            await session.scalars(
                text("SELECT indexname FROM pg_indexes WHERE tablename = 'articles'")
            )
        ).all()
    )
    assert {
        "ix_articles_title_trgm",
        "ix_articles_description_trgm",
        "ix_articles_body_trgm",
    } <= names

    await session.execute(text("SET LOCAL enable_seqscan = off"))
    plan = "\n".join(
        (
            await session.scalars(
                text(
                    "EXPLAIN SELECT id FROM articles WHERE title ILIKE :p "
                    "OR description ILIKE :p OR body ILIKE :p"
                ),
                {"p": "%dragon%"},
            )
        ).all()
    )
    await session.rollback()
    for column in ("title", "description", "body"):
        assert f"ix_articles_{column}_trgm" in plan
