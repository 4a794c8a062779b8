"""Find-or-404 for the todo routes and pages.

Not in queries.py, which knows nothing of HTTP; not in routes.py, so the HTML pages
use it without importing another route module.
"""

from __future__ import annotations

from service.db import get_session
from service.errors import NotFound
from service.todos import queries
from service.todos.models import Todo


async def find_todo(todo_id: int) -> Todo:
    todo = await queries.get_todo(get_session(), todo_id)
    if todo is None:
        raise NotFound(f"todo {todo_id} not found")
    return todo
