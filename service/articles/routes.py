"""Articles and favorites: the RealWorld routes, which are also the articles seed's."""

from __future__ import annotations

from quart import Blueprint
from quart_cors import cors
from quart_schema import validate_querystring, validate_request, validate_response

from service.articles import queries
from service.articles.models import Article
from service.articles.queries import ArticleFilters, ArticleView
from service.articles.schemas import (
    ArticleCreate,
    ArticleEnvelope,
    ArticleListItem,
    ArticleOut,
    ArticleQuery,
    ArticlesEnvelope,
    ArticleUpdate,
    FeedQuery,
    TagsEnvelope,
)
from service.auth import Forbidden, optional_claims, require_auth, required_claims, viewer_id
from service.db import get_session
from service.errors import NotFound
from service.users.routes import profile_out

# CORS always on /api, for browser front ends; origins from CORS_ORIGINS (default "*").
blueprint = cors(Blueprint("articles", __name__, url_prefix="/api"))


def _list_item(view: ArticleView) -> ArticleListItem:
    article = view.article
    return ArticleListItem(
        slug=article.slug,
        title=article.title,
        description=article.description,
        tagList=view.tags,
        createdAt=article.created_at,
        updatedAt=article.updated_at,
        favorited=view.favorited,
        favoritesCount=view.favorites_count,
        author=profile_out(view.author, view.following),
    )


def article_out(view: ArticleView) -> ArticleOut:
    return ArticleOut(**_list_item(view).model_dump(), body=view.article.body)


async def _view(slug: str, user_id: int | None) -> ArticleView:
    view = await queries.get_article_view(get_session(), slug, viewer_id=user_id)
    if view is None:
        raise NotFound(f"article {slug!r} not found")
    return view


async def find_article(slug: str) -> Article:
    article = await queries.get_article(get_session(), slug)
    if article is None:
        raise NotFound(f"article {slug!r} not found")
    return article


async def _own_article(slug: str, user_id: int) -> Article:
    article = await find_article(slug)
    if article.author_id != user_id:
        raise Forbidden("only the author may change this article")
    return article


@blueprint.get("/articles", strict_slashes=False)
@validate_querystring(ArticleQuery)
@validate_response(ArticlesEnvelope)
async def list_articles(query_args: ArticleQuery) -> ArticlesEnvelope:
    filters = ArticleFilters(
        tag=query_args.tag,
        author=query_args.author,
        favorited=query_args.favorited,
        search=query_args.search,
    )
    views, total = await queries.list_articles(
        get_session(),
        filters,
        viewer_id=viewer_id(await optional_claims()),
        limit=query_args.limit,
        offset=query_args.offset,
    )
    return ArticlesEnvelope(articles=[_list_item(view) for view in views], articlesCount=total)


@blueprint.get("/articles/feed", strict_slashes=False)
@require_auth
@validate_querystring(FeedQuery)
@validate_response(ArticlesEnvelope)
async def feed(query_args: FeedQuery) -> ArticlesEnvelope:
    claims = await required_claims()
    views, total = await queries.list_articles(
        get_session(),
        ArticleFilters(feed_of=claims.user_id),
        viewer_id=claims.user_id,
        limit=query_args.limit,
        offset=query_args.offset,
    )
    return ArticlesEnvelope(articles=[_list_item(view) for view in views], articlesCount=total)


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
    view = await _view(article.slug, claims.user_id)
    return ArticleEnvelope(article=article_out(view)), 201


@blueprint.get("/articles/<slug>", strict_slashes=False)
@validate_response(ArticleEnvelope)
async def get_article(slug: str) -> ArticleEnvelope:
    view = await _view(slug, viewer_id(await optional_claims()))
    return ArticleEnvelope(article=article_out(view))


@blueprint.put("/articles/<slug>", strict_slashes=False)
@require_auth
@validate_request(ArticleUpdate)
@validate_response(ArticleEnvelope)
async def update_article(slug: str, data: ArticleUpdate) -> ArticleEnvelope:
    claims = await required_claims()
    article = await _own_article(slug, claims.user_id)
    session = get_session()
    await queries.update_article(session, article, data.changes())
    await session.commit()
    view = await _view(article.slug, claims.user_id)
    return ArticleEnvelope(article=article_out(view))


@blueprint.delete("/articles/<slug>", strict_slashes=False)
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
    return ArticleEnvelope(article=article_out(await _view(slug, claims.user_id)))


@blueprint.delete("/articles/<slug>/favorite", strict_slashes=False)
@require_auth
@validate_response(ArticleEnvelope)
async def unfavorite(slug: str) -> ArticleEnvelope:
    claims = await required_claims()
    article = await find_article(slug)
    session = get_session()
    await queries.unfavorite_article(session, claims.user_id, article.id)
    await session.commit()
    return ArticleEnvelope(article=article_out(await _view(slug, claims.user_id)))


@blueprint.get("/tags", strict_slashes=False)
@validate_response(TagsEnvelope)
async def tags() -> TagsEnvelope:
    return TagsEnvelope(tags=await queries.list_tags(get_session()))
