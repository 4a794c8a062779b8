"""The article reads behind the routes: a page of articles and one article, each with
everything the RealWorld shape shows.

A page is one query whatever its size: the articles with their author, tags,
`favoritesCount`, `favorited`, `following` and the total count as columns. Only a page past
the end asks for the count again.

SQLAlchemy Core on the tables, and each statement built once per shape (dialect, filters in
use, anonymous or not; a few dozen at most) with bound parameters, so a request builds no
expression and no cache key, and what a client sends only ever arrives as a parameter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Dialect,
    FromClause,
    Integer,
    Result,
    ScalarSelect,
    Select,
    String,
    Text,
    TypeDecorator,
    bindparam,
    exists,
    false,
    func,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from service.articles.models import Article, Favorite, Tag, article_tags
from service.users.models import Follow, User

articles = Article.__table__
users = User.__table__
favorites = Favorite.__table__
follows = Follow.__table__
tags = Tag.__table__


@dataclass(frozen=True)
class ArticleFilters:
    tag: str | None = None
    author: str | None = None
    favorited: str | None = None
    search: str | None = None
    feed_of: int | None = None  # the user whose feed this is

    def parameters(self) -> dict[str, Any]:
        """The bound values of the filters in use; their names pick the statement."""
        values: dict[str, Any] = {}
        if self.tag is not None:
            values["tag"] = self.tag
        if self.author is not None:
            values["author"] = self.author
        if self.favorited is not None:
            values["favorited"] = self.favorited
        if self.search:
            values["search"] = f"%{_escape_like(self.search)}%"
        if self.feed_of is not None:
            values["feed_of"] = self.feed_of
        return values


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class _SortedNames(TypeDecorator[list[str]]):
    """SQLite's json_group_array() of tag names, as a sorted list.

    SQLite 3.40 has no ORDER BY inside an aggregate; Python orders str by code point, which
    is SQLite's BINARY collation, the order ORDER BY name gives there.
    """

    impl = Text
    cache_ok = True

    def process_result_value(self, value: str | None, dialect: Dialect) -> list[str]:
        return sorted(json.loads(value)) if value else []


def _tag_list(dialect: str) -> ColumnElement[list[str]]:
    def of_the_article(column: ColumnElement[Any]) -> Select[Any]:
        return (
            select(column)
            .select_from(tags)
            .join(article_tags, article_tags.c.tag_id == tags.c.id)
            .where(article_tags.c.article_id == articles.c.id)
        )

    if dialect == "postgresql":
        # ARRAY(SELECT ...): sorted by the database's collation, '{}' when there is none.
        # Untyped, so the list asyncpg decodes arrives as it is, not copied by ARRAY's
        # result processor.
        ordered = of_the_article(tags.c.name).order_by(tags.c.name).scalar_subquery()
        return func.array(ordered).label("tag_list")
    names = func.json_group_array(tags.c.name, type_=_SortedNames)
    return of_the_article(names).scalar_subquery().label("tag_list")


def _user_named(parameter: str) -> ScalarSelect[int]:
    # Never correlated with the users joined in the page's FROM: a lookup of its own.
    return (
        select(users.c.id)
        .where(users.c.username == bindparam(parameter, type_=String))
        .correlate(None)
        .scalar_subquery()
    )


def _conditions(table: FromClause, filter_names: tuple[str, ...]) -> list[ColumnElement[bool]]:
    """The filters in `filter_names` on `table` (articles, or an alias of it)."""
    conditions: list[ColumnElement[bool]] = []
    if "tag" in filter_names:
        tagged = (
            select(article_tags.c.article_id)
            .join(tags, tags.c.id == article_tags.c.tag_id)
            .where(tags.c.name == bindparam("tag", type_=String))
        )
        conditions.append(table.c.id.in_(tagged))
    if "author" in filter_names:
        conditions.append(table.c.author_id == _user_named("author"))
    if "favorited" in filter_names:
        liked = select(favorites.c.article_id).where(
            favorites.c.user_id == _user_named("favorited")
        )
        conditions.append(table.c.id.in_(liked))
    if "search" in filter_names:
        pattern = bindparam("search", type_=String)
        conditions.append(
            or_(
                table.c.title.ilike(pattern, escape="\\"),
                table.c.description.ilike(pattern, escape="\\"),
                table.c.body.ilike(pattern, escape="\\"),
            )
        )
    if "feed_of" in filter_names:
        followed = select(follows.c.followed_id).where(
            follows.c.follower_id == bindparam("feed_of", type_=Integer)
        )
        conditions.append(table.c.author_id.in_(followed))
    return conditions


def _article_select(dialect: str, *, viewer: bool) -> Select[Any]:
    """An article with everything a list item shows; `viewer_id` is bound when `viewer`."""
    favorites_count = (
        select(func.count())
        .select_from(favorites)
        .where(favorites.c.article_id == articles.c.id)
        .scalar_subquery()
    )
    if viewer:
        viewer_id = bindparam("viewer_id", type_=Integer)
        favorited: ColumnElement[bool] = exists().where(
            favorites.c.article_id == articles.c.id, favorites.c.user_id == viewer_id
        )
        following: ColumnElement[bool] = exists().where(
            follows.c.follower_id == viewer_id, follows.c.followed_id == articles.c.author_id
        )
    else:
        favorited = following = false()
    return select(
        articles.c.slug,
        articles.c.title,
        articles.c.description,
        articles.c.created_at,
        articles.c.updated_at,
        users.c.username,
        users.c.bio,
        users.c.image,
        _tag_list(dialect),
        favorites_count.label("favorites_count"),
        favorited.label("favorited"),
        following.label("following"),
    ).join_from(articles, users, users.c.id == articles.c.author_id)


@cache
def _page_statement(dialect: str, filter_names: tuple[str, ...], *, viewer: bool) -> Select[Any]:
    # The total rides along on every row: an uncorrelated subquery, so the database counts
    # once per statement, and the page needs no second round trip. On its own copy of the
    # table (an alias), so that nothing in it correlates with the page's articles.
    counted = articles.alias("counted")
    total = (
        select(func.count())
        .select_from(counted)
        .where(*_conditions(counted, filter_names))
        .scalar_subquery()
    )
    return (
        _article_select(dialect, viewer=viewer)
        .add_columns(total.label("total"))
        .where(*_conditions(articles, filter_names))
        .order_by(articles.c.created_at.desc(), articles.c.id.desc())
        .limit(bindparam("limit", type_=Integer))
        .offset(bindparam("offset", type_=Integer))
    )


@cache
def _count_statement(filter_names: tuple[str, ...]) -> Select[Any]:
    return select(func.count()).select_from(articles).where(*_conditions(articles, filter_names))


@cache
def _one_statement(dialect: str, *, viewer: bool) -> Select[Any]:
    return (
        _article_select(dialect, viewer=viewer)
        .add_columns(articles.c.body)
        .where(articles.c.slug == bindparam("slug", type_=String))
    )


def _dicts(result: Result[Any]) -> list[dict[str, Any]]:
    # Plain dicts: reading a Row's fields by name costs about a microsecond each, a dict's
    # a few hundredths of that, and zip() makes the dicts cheaply.
    columns = tuple(result.keys())
    return [dict(zip(columns, row, strict=True)) for row in result]


async def list_articles(
    connection: AsyncConnection,
    filters: ArticleFilters,
    *,
    viewer_id: int | None,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    """A page of articles, newest first, and how many match in all."""
    parameters = filters.parameters()
    filter_names = tuple(parameters)
    statement = _page_statement(connection.dialect.name, filter_names, viewer=viewer_id is not None)
    parameters.update(limit=limit, offset=offset, viewer_id=viewer_id)
    rows = _dicts(await connection.execute(statement, parameters))
    if rows:
        return rows, rows[0]["total"]
    if offset == 0:
        return rows, 0
    total = await connection.scalar(_count_statement(filter_names), parameters)
    return rows, int(total or 0)


async def find_article_view(
    connection: AsyncConnection, slug: str, *, viewer_id: int | None
) -> dict[str, Any] | None:
    """The article with everything its page shows, body included."""
    statement = _one_statement(connection.dialect.name, viewer=viewer_id is not None)
    rows = _dicts(await connection.execute(statement, {"slug": slug, "viewer_id": viewer_id}))
    return rows[0] if rows else None
