"""The RealWorld article list for an anonymous reader, as a Flask + SQLAlchemy Conduit app
writes it: a count query, then the page with its authors, tags and favorites each
eager-loaded by `selectinload` (five queries a page, whatever its size)."""

from __future__ import annotations

from db import session
from errors import int_arg, invalid
from flask import Blueprint, Response, jsonify, request
from models import Article, Favorite, Tag, User
from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import selectinload

blueprint = Blueprint("articles", __name__, url_prefix="/api")

MAX_OFFSET = 2_147_483_647


def _text_arg(name: str, max_length: int) -> str | None:
    value = request.args.get(name)
    if value is not None and (len(value) > max_length or "\x00" in value):
        raise invalid(name, f"String should have at most {max_length} characters")
    return value


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _filters() -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    tag = _text_arg("tag", 100)
    author = _text_arg("author", 64)
    favorited = _text_arg("favorited", 64)
    search = _text_arg("search", 200)
    if tag is not None:
        conditions.append(Article.tags.any(Tag.name == tag))
    if author is not None:
        conditions.append(User.username == author)
    if favorited is not None:
        favoriters = select(User.id).where(User.username == favorited)
        conditions.append(Article.favorites.any(Favorite.user_id.in_(favoriters)))
    if search:
        pattern = f"%{_escape_like(search)}%"
        conditions.append(
            or_(
                Article.title.ilike(pattern, escape="\\"),
                Article.description.ilike(pattern, escape="\\"),
                Article.body.ilike(pattern, escape="\\"),
            )
        )
    return conditions


# strict_slashes=False: the service answers /api/articles and /api/articles/ alike.
@blueprint.get("/articles", strict_slashes=False)
def list_articles() -> Response:
    limit = int_arg("limit", 20, 1, 100)
    offset = int_arg("offset", 0, 0, MAX_OFFSET)
    conditions = _filters()
    db = session()
    total = db.scalar(select(func.count(Article.id)).join(Article.author).where(*conditions))
    page = db.scalars(
        select(Article)
        .join(Article.author)
        .where(*conditions)
        .options(
            selectinload(Article.author),
            selectinload(Article.tags),
            selectinload(Article.favorites),
        )
        .order_by(Article.created_at.desc(), Article.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return jsonify(
        {"articles": [article.to_list_item() for article in page], "articlesCount": total}
    )
