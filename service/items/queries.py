from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import utc_now
from service.items.models import Item


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def list_items(
    session: AsyncSession, *, limit: int, offset: int, sort: str, name: str | None
) -> Sequence[Item]:
    column = getattr(Item, sort.removeprefix("-"))  # sort is whitelisted by ItemQuery
    descending = sort.startswith("-")
    order = [column.desc() if descending else column.asc()]
    if column is not Item.id:
        order.append(Item.id.desc() if descending else Item.id.asc())  # stable pages
    statement = select(Item).order_by(*order).limit(limit).offset(offset)
    if name:
        statement = statement.where(Item.name.ilike(f"%{_escape_like(name)}%", escape="\\"))
    return (await session.scalars(statement)).all()


async def get_item(session: AsyncSession, item_id: int) -> Item | None:
    return await session.get(Item, item_id)


async def create_item(session: AsyncSession, **fields: Any) -> Item:
    now = utc_now()
    item = Item(**fields, created_at=now, updated_at=now)
    session.add(item)
    await session.flush()
    return item


async def update_item(session: AsyncSession, item: Item, **changes: Any) -> Item:
    for field, value in changes.items():
        setattr(item, field, value)
    await session.flush()
    await session.refresh(item)
    return item


async def delete_item(session: AsyncSession, item: Item) -> None:
    await session.delete(item)
    await session.flush()
