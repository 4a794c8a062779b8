"""Rows for tests, made through the session (never seed rows or fixed ids)."""

from __future__ import annotations

import itertools
from typing import Any

from quart import Quart
from sqlalchemy.ext.asyncio import AsyncSession

from service.articles.models import Article
from service.articles.queries import create_article, favorite_article
from service.auth import create_token, hash_password
from service.items.models import Item
from service.products.models import Product
from service.users.models import User
from service.users.queries import follow

_counter = itertools.count(1)


async def make_product(session: AsyncSession, **fields: Any) -> Product:
    number = next(_counter)
    values: dict[str, Any] = {
        "name": f"product {number}",
        "price": 10.0 + number,
        "category": "misc",
    }
    values.update(fields)
    product = Product(**values)
    session.add(product)
    await session.commit()
    return product


async def make_item(session: AsyncSession, **fields: Any) -> Item:
    number = next(_counter)
    values: dict[str, Any] = {
        "name": f"item {number}",
        "description": f"description {number}",
        "quantity": number,
        "price": 1.5 * number,
    }
    values.update(fields)
    item = Item(**values)
    session.add(item)
    await session.commit()
    return item


# One argon2 hash computed once: hashing per user would make big fixtures slow.
FACTORY_PASSWORD = "correct horse battery"
_password_hash: str | None = None


async def make_user(session: AsyncSession, **fields: Any) -> User:
    global _password_hash
    if _password_hash is None:
        _password_hash = await hash_password(FACTORY_PASSWORD)
    number = next(_counter)
    values: dict[str, Any] = {
        "username": f"user{number}",
        "email": f"user{number}@example.com",
        "password_hash": _password_hash,
    }
    values.update(fields)
    user = User(**values)
    session.add(user)
    await session.commit()
    return user


def token_for(app: Quart, user: User) -> str:
    return create_token(app.extensions["settings"], user.id, user.token_version)


def auth_headers(app: Quart, user: User) -> dict[str, str]:
    return {"Authorization": f"Token {token_for(app, user)}"}


async def make_article(
    session: AsyncSession, author: User, *, tags: list[str] | None = None, **fields: Any
) -> Article:
    number = next(_counter)
    values: dict[str, Any] = {
        "title": f"Article {number}",
        "description": f"description {number}",
        "body": f"body {number}",
    }
    values.update(fields)
    article = await create_article(
        session,
        author_id=author.id,
        title=values["title"],
        description=values["description"],
        body=values["body"],
        tags=sorted(set(tags or [])),
    )
    for field in ("created_at", "updated_at"):
        if field in values:
            setattr(article, field, values[field])
    await session.commit()
    return article


async def favorite(session: AsyncSession, user: User, article: Article) -> None:
    await favorite_article(session, user.id, article.id)
    await session.commit()


async def follow_user(session: AsyncSession, follower: User, followed: User) -> None:
    await follow(session, follower.id, followed.id)
    await session.commit()
