from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import utc_now
from service.todos.models import Todo


async def list_todos(
    session: AsyncSession, *, limit: int, offset: int, done: bool | None = None
) -> Sequence[Todo]:
    statement = select(Todo).order_by(Todo.id).limit(limit).offset(offset)
    if done is not None:
        statement = statement.where(Todo.done.is_(done))
    return (await session.scalars(statement)).all()


async def get_todo(session: AsyncSession, todo_id: int) -> Todo | None:
    return await session.get(Todo, todo_id)


async def create_todo(session: AsyncSession, task: str) -> Todo:
    now = utc_now()
    todo = Todo(task=task, done=False, created_at=now, updated_at=now)
    session.add(todo)
    await session.flush()
    return todo


async def update_todo(session: AsyncSession, todo: Todo, **changes: Any) -> Todo:
    for field, value in changes.items():
        setattr(todo, field, value)
    await session.flush()
    await session.refresh(todo)
    return todo


async def delete_todo(session: AsyncSession, todo: Todo) -> None:
    await session.delete(todo)
    await session.flush()


async def list_todos_newest_first(
    session: AsyncSession, *, limit: int, offset: int = 0
) -> Sequence[Todo]:
    statement = select(Todo).order_by(Todo.id.desc()).limit(limit).offset(offset)
    return (await session.scalars(statement)).all()


async def count_todos(session: AsyncSession) -> int:
    return await session.scalar(select(func.count()).select_from(Todo)) or 0
