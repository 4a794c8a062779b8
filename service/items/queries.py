from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Integer, RowMapping, Select, String, bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from service.db import utc_now
from service.items.models import Item
from service.items.schemas import SORTABLE_COLUMNS


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# The reads use SQLAlchemy Core on the table: rows, not ORM objects, and statements built
# once with bound parameters, so a request skips building the expression and its cache key.
items = Item.__table__


def _list_statement(sort: str, *, by_name: bool) -> Select[Any]:
    column = items.c[sort.removeprefix("-")]
    descending = sort.startswith("-")
    order = [column.desc() if descending else column.asc()]
    if column is not items.c.id:
        order.append(items.c.id.desc() if descending else items.c.id.asc())  # stable pages
    statement = (
        select(items)
        .order_by(*order)
        .limit(bindparam("limit", type_=Integer))
        .offset(bindparam("offset", type_=Integer))
    )
    if by_name:
        pattern = bindparam("name_pattern", type_=String)
        statement = statement.where(items.c.name.ilike(pattern, escape="\\"))
    return statement


# One statement per sort order, with and without the name filter: the client's `sort`
# only ever picks one of these (an unknown value is a KeyError, never SQL).
_LIST = {
    (sort, by_name): _list_statement(sort, by_name=by_name)
    for column in SORTABLE_COLUMNS
    for sort in (column, f"-{column}")
    for by_name in (False, True)
}
_ONE = select(items).where(items.c.id == bindparam("id", type_=Integer))


async def list_items(
    connection: AsyncConnection, *, limit: int, offset: int, sort: str, name: str | None
) -> list[dict[str, Any]]:
    parameters: dict[str, Any] = {"limit": limit, "offset": offset}
    if name:
        parameters["name_pattern"] = f"%{_escape_like(name)}%"
    result = await connection.execute(_LIST[sort, bool(name)], parameters)
    # Plain dicts: pydantic validates a dict several times faster than a RowMapping,
    # and zip() is the cheap way to make them.
    columns = tuple(result.keys())
    return [dict(zip(columns, row, strict=True)) for row in result]


async def find_item(connection: AsyncConnection | AsyncSession, item_id: int) -> RowMapping | None:
    """The item's row: on a read connection, or in a write's session before it changes it."""
    return (await connection.execute(_ONE, {"id": item_id})).mappings().first()


async def create_item(session: AsyncSession, **fields: Any) -> Item:
    now = utc_now()
    item = Item(**fields, created_at=now, updated_at=now)
    session.add(item)
    await session.flush()
    return item


# The writes are single conditional statements rather than read-change-flush on an ORM
# object: with `if_updated_at` the row is changed only while it still is the version the
# caller saw. Two writers that saw the same version cannot both succeed: PostgreSQL
# re-checks the WHERE against the row the first one committed (the second's UPDATE waits
# for its lock), and SQLite runs writers one at a time.


async def update_item(
    session: AsyncSession,
    item_id: int,
    changes: dict[str, Any],
    *,
    if_updated_at: datetime | None = None,
) -> RowMapping | None:
    """The changed row, or None when there is no such item (or no longer that version)."""
    statement = (
        update(items)
        .where(items.c.id == item_id)
        .values(**changes, updated_at=utc_now())
        .returning(*items.c)
    )
    if if_updated_at is not None:
        statement = statement.where(items.c.updated_at == if_updated_at)
    return (await session.execute(statement)).mappings().first()


async def delete_item(
    session: AsyncSession, item_id: int, *, if_updated_at: datetime | None = None
) -> bool:
    """True when the item was deleted (it existed, and was still that version)."""
    statement = delete(items).where(items.c.id == item_id)
    if if_updated_at is not None:
        statement = statement.where(items.c.updated_at == if_updated_at)
    result = await session.execute(statement)
    return result.rowcount == 1
