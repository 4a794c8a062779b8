"""Rows for tests, made through the session (never seed rows or fixed ids)."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from service.items.models import Item
from service.products.models import Product

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
