"""Article, tag, favorite and comment queries; the reads that answer the article routes
are in reads.py."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from slugify import slugify
from sqlalchemy import ColumnElement, Select, delete, exists, false, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.articles.models import Article, Comment, Favorite, Tag, article_tags
from service.db import insert_ignoring_duplicates, utc_now
from service.users.models import Follow, User

SLUG_BASE_MAX_LENGTH = 200


async def get_article(session: AsyncSession, slug: str) -> Article | None:
    return await session.scalar(select(Article).where(Article.slug == slug))


def _slug(title: str, article_id: int) -> str:
    # The id makes the slug unique forever: ids are never reused (sqlite_autoincrement too).
    base = slugify(title, max_length=SLUG_BASE_MAX_LENGTH, word_boundary=True) or "article"
    return f"{base}-{article_id}"


async def _set_tags(session: AsyncSession, article_id: int, names: list[str]) -> None:
    await session.execute(delete(article_tags).where(article_tags.c.article_id == article_id))
    if not names:
        return
    await insert_ignoring_duplicates(session, Tag.__table__, [{"name": name} for name in names])
    tag_ids = (await session.scalars(select(Tag.id).where(Tag.name.in_(names)))).all()
    await session.execute(
        article_tags.insert(), [{"article_id": article_id, "tag_id": tag_id} for tag_id in tag_ids]
    )


async def create_article(
    session: AsyncSession,
    *,
    author_id: int,
    title: str,
    description: str,
    body: str,
    tags: list[str],
) -> Article:
    article = Article(
        slug=f"pending-{uuid.uuid4().hex}",  # replaced once the id is known
        title=title,
        description=description,
        body=body,
        author_id=author_id,
    )
    session.add(article)
    await session.flush()
    article.slug = _slug(title, article.id)
    article.updated_at = article.created_at  # setting the slug is not an update
    await _set_tags(session, article.id, tags)
    await session.flush()
    return article


async def update_article(session: AsyncSession, article: Article, changes: dict[str, Any]) -> None:
    tags = changes.pop("tagList", None)
    for field, value in changes.items():
        setattr(article, field, value)
    if "title" in changes:
        article.slug = _slug(changes["title"], article.id)
    if tags is not None:
        await _set_tags(session, article.id, tags)
        article.updated_at = utc_now()  # the tags live in another table: bump it ourselves
    await session.flush()


async def delete_article(session: AsyncSession, article: Article) -> None:
    # Comments, favorites and tag links go with it (ON DELETE CASCADE).
    await session.execute(delete(Article).where(Article.id == article.id))


async def favorite_article(session: AsyncSession, user_id: int, article_id: int) -> None:
    await insert_ignoring_duplicates(
        session, Favorite.__table__, [{"user_id": user_id, "article_id": article_id}]
    )


async def unfavorite_article(session: AsyncSession, user_id: int, article_id: int) -> None:
    await session.execute(
        delete(Favorite).where(Favorite.user_id == user_id, Favorite.article_id == article_id)
    )


async def list_tags(session: AsyncSession) -> list[str]:
    """Tags used by at least one article, by name."""
    statement = (
        select(Tag.name).where(exists().where(article_tags.c.tag_id == Tag.id)).order_by(Tag.name)
    )
    return list((await session.scalars(statement)).all())


@dataclass(frozen=True)
class CommentView:
    comment: Comment
    author: User
    following: bool


def _comment_select(viewer_id: int | None) -> Select[Any]:
    following: ColumnElement[bool] = (
        false()
        if viewer_id is None
        else exists().where(
            Follow.follower_id == viewer_id, Follow.followed_id == Comment.author_id
        )
    )
    return select(Comment, User, following.label("following")).join(
        User, User.id == Comment.author_id
    )


async def list_comments(
    session: AsyncSession, article_id: int, *, viewer_id: int | None
) -> list[CommentView]:
    rows = await session.execute(
        _comment_select(viewer_id)
        .where(Comment.article_id == article_id)
        .order_by(Comment.created_at, Comment.id)
    )
    return [CommentView(row.Comment, row.User, bool(row.following)) for row in rows]


async def create_comment(
    session: AsyncSession, *, article_id: int, author_id: int, body: str
) -> Comment:
    now = utc_now()
    comment = Comment(
        article_id=article_id, author_id=author_id, body=body, created_at=now, updated_at=now
    )
    session.add(comment)
    await session.flush()
    return comment


async def get_comment(session: AsyncSession, article_id: int, comment_id: int) -> Comment | None:
    return await session.scalar(
        select(Comment).where(Comment.id == comment_id, Comment.article_id == article_id)
    )


async def delete_comment(session: AsyncSession, comment: Comment) -> None:
    await session.execute(delete(Comment).where(Comment.id == comment.id))
