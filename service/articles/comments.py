"""Comments on an article (RealWorld)."""

from __future__ import annotations

from quart import Blueprint
from quart_cors import cors
from quart_schema import document_response, validate_request, validate_response

from service.articles import queries
from service.articles.lookups import find_article
from service.articles.models import Comment
from service.articles.schemas import CommentCreate, CommentEnvelope, CommentOut, CommentsEnvelope
from service.auth import Forbidden, optional_claims, require_auth, required_claims, viewer_id
from service.db import get_session
from service.errors import NotFound
from service.openapi import NoContent, documents_errors, token_optional
from service.users.models import User
from service.users.schemas import profile_out

# CORS on /api for browser front ends: origins from CORS_ORIGINS (unset: any in development
# and test, none in production; see Settings.cors_allowed_origins).
blueprint = cors(Blueprint("comments", __name__, url_prefix="/api"))


def comment_out(comment: Comment, author: User, following: bool) -> CommentOut:
    return CommentOut(
        id=comment.id,
        createdAt=comment.created_at,
        updatedAt=comment.updated_at,
        body=comment.body,
        author=profile_out(author, following),
    )


@blueprint.get("/articles/<slug>/comments", strict_slashes=False)
@token_optional
@validate_response(CommentsEnvelope)
async def list_comments(slug: str) -> CommentsEnvelope:
    article = await find_article(slug)
    views = await queries.list_comments(
        get_session(), article.id, viewer_id=viewer_id(await optional_claims())
    )
    return CommentsEnvelope(
        comments=[comment_out(view.comment, view.author, view.following) for view in views]
    )


@blueprint.post("/articles/<slug>/comments", strict_slashes=False)
@require_auth
@validate_request(CommentCreate)
@validate_response(CommentEnvelope)
async def add_comment(slug: str, data: CommentCreate) -> CommentEnvelope:
    claims = await required_claims()
    article = await find_article(slug)
    session = get_session()
    comment = await queries.create_comment(
        session, article_id=article.id, author_id=claims.user_id, body=data.body
    )
    await session.commit()
    author = await session.get(User, claims.user_id)
    assert author is not None
    return CommentEnvelope(comment=comment_out(comment, author, following=False))


@blueprint.delete("/articles/<slug>/comments/<id:comment_id>", strict_slashes=False)
@documents_errors(403)
@document_response(NoContent, 204)
@require_auth
async def delete_comment(slug: str, comment_id: int) -> tuple[str, int]:
    claims = await required_claims()
    article = await find_article(slug)
    session = get_session()
    comment = await queries.get_comment(session, article.id, comment_id)
    if comment is None:
        raise NotFound(f"comment {comment_id} not found on this article")
    if comment.author_id != claims.user_id:
        raise Forbidden("only the comment's author may delete it")
    await queries.delete_comment(session, comment)
    await session.commit()
    return "", 204
