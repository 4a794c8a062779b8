"""Articles and favorites: the RealWorld routes, which are also the articles seed's."""

from __future__ import annotations

from typing import Any

from quart import Blueprint
from quart_cors import cors
from quart_schema import (
    document_response,
    validate_querystring,
    validate_request,
    validate_response,
)

from service.articles import queries, reads
from service.articles.lookups import find_article
from service.articles.models import Article
from service.articles.reads import ArticleFilters
from service.articles.schemas import (
    ArticleCreate,
    ArticleEnvelope,
    ArticleQuery,
    ArticlesEnvelope,
    ArticleUpdate,
    FeedQuery,
    TagsEnvelope,
)
from service.auth import (
    Forbidden,
    TokenClaims,
    optional_claims,
    require_auth,
    required_claims,
    viewer_id,
)
from service.db import get_session, reading
from service.errors import NotFound
from service.openapi import NoContent, documents_errors, token_optional

# CORS on /api for browser front ends: origins from CORS_ORIGINS (unset: any in development
# and test, none in production; see Settings.cors_allowed_origins).
blueprint = cors(Blueprint("articles", __name__, url_prefix="/api"))


def _list_item(row: dict[str, Any]) -> dict[str, Any]:
    # Plain dicts, validated once for the whole envelope: far cheaper than a model per item.
    return {
        "slug": row["slug"],
        "title": row["title"],
        "description": row["description"],
        "tagList": row["tag_list"],
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
        "favorited": row["favorited"],
        "favoritesCount": row["favorites_count"],
        "author": {
            "username": row["username"],
            "bio": row["bio"],
            "image": row["image"],
            "following": row["following"],
        },
    }


async def _articles(
    filters: ArticleFilters, claims: TokenClaims | None, *, limit: int, offset: int
) -> ArticlesEnvelope:
    async with reading() as connection:
        rows, total = await reads.list_articles(
            connection, filters, viewer_id=viewer_id(claims), limit=limit, offset=offset
        )
    return ArticlesEnvelope.model_validate(
        {"articles": [_list_item(row) for row in rows], "articlesCount": total}
    )


async def _view(slug: str, claims: TokenClaims | None) -> ArticleEnvelope:
    async with reading() as connection:
        row = await reads.find_article_view(connection, slug, viewer_id=viewer_id(claims))
    if row is None:
        raise NotFound(f"article {slug!r} not found")
    return ArticleEnvelope.model_validate({"article": {**_list_item(row), "body": row["body"]}})


async def _own_article(slug: str, user_id: int) -> Article:
    article = await find_article(slug)
    if article.author_id != user_id:
        raise Forbidden("only the author may change this article")
    return article


@blueprint.get("/articles", strict_slashes=False)
@token_optional
@validate_querystring(ArticleQuery)
@validate_response(ArticlesEnvelope)
async def list_articles(query_args: ArticleQuery) -> ArticlesEnvelope:
    filters = ArticleFilters(
        tag=query_args.tag,
        author=query_args.author,
        favorited=query_args.favorited,
        search=query_args.search,
    )
    claims = await optional_claims()
    return await _articles(filters, claims, limit=query_args.limit, offset=query_args.offset)


@blueprint.get("/articles/feed", strict_slashes=False)
@require_auth
@validate_querystring(FeedQuery)
@validate_response(ArticlesEnvelope)
async def feed(query_args: FeedQuery) -> ArticlesEnvelope:
    claims = await required_claims()
    filters = ArticleFilters(feed_of=claims.user_id)
    return await _articles(filters, claims, limit=query_args.limit, offset=query_args.offset)


@blueprint.post("/articles", strict_slashes=False)
@require_auth
@validate_request(ArticleCreate)
@validate_response(ArticleEnvelope, 201)
async def create_article(data: ArticleCreate) -> tuple[ArticleEnvelope, int]:
    claims = await required_claims()
    session = get_session()
    article = await queries.create_article(
        session,
        author_id=claims.user_id,
        title=data.title,
        description=data.description,
        body=data.body,
        tags=data.tagList,
    )
    await session.commit()
    return await _view(article.slug, claims), 201


@blueprint.get("/articles/<slug>", strict_slashes=False)
@token_optional
@validate_response(ArticleEnvelope)
async def get_article(slug: str) -> ArticleEnvelope:
    return await _view(slug, await optional_claims())


@blueprint.put("/articles/<slug>", strict_slashes=False)
@documents_errors(403)
@require_auth
@validate_request(ArticleUpdate)
@validate_response(ArticleEnvelope)
async def update_article(slug: str, data: ArticleUpdate) -> ArticleEnvelope:
    claims = await required_claims()
    article = await _own_article(slug, claims.user_id)
    session = get_session()
    await queries.update_article(session, article, data.changes())
    await session.commit()
    return await _view(article.slug, claims)


@blueprint.delete("/articles/<slug>", strict_slashes=False)
@documents_errors(403)
@document_response(NoContent, 204)
@require_auth
async def delete_article(slug: str) -> tuple[str, int]:
    claims = await required_claims()
    article = await _own_article(slug, claims.user_id)
    session = get_session()
    await queries.delete_article(session, article)
    await session.commit()
    return "", 204


@blueprint.post("/articles/<slug>/favorite", strict_slashes=False)
@require_auth
@validate_response(ArticleEnvelope)
async def favorite(slug: str) -> ArticleEnvelope:
    claims = await required_claims()
    article = await find_article(slug)
    session = get_session()
    await queries.favorite_article(session, claims.user_id, article.id)
    await session.commit()
    return await _view(slug, claims)


@blueprint.delete("/articles/<slug>/favorite", strict_slashes=False)
@require_auth
@validate_response(ArticleEnvelope)
async def unfavorite(slug: str) -> ArticleEnvelope:
    claims = await required_claims()
    article = await find_article(slug)
    session = get_session()
    await queries.unfavorite_article(session, claims.user_id, article.id)
    await session.commit()
    return await _view(slug, claims)


@blueprint.get("/tags", strict_slashes=False)
@validate_response(TagsEnvelope)
async def tags() -> TagsEnvelope:
    return TagsEnvelope(tags=await queries.list_tags(get_session()))
