"""The todo REST API (todo seeds)."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import (
    document_response,
    validate_querystring,
    validate_request,
    validate_response,
)
from werkzeug.datastructures import Headers

from service.db import get_session
from service.errors import BadRequest
from service.openapi import NoContent
from service.todos import queries
from service.todos.lookups import find_todo
from service.todos.schemas import TodoCreate, TodoOut, TodoPatch, TodoQuery, TodoReplace

blueprint = Blueprint("todos", __name__)


@blueprint.get("/todos")
@validate_querystring(TodoQuery)
@validate_response(list[TodoOut])
async def list_todos(query_args: TodoQuery) -> list[TodoOut]:
    todos = await queries.list_todos(get_session(), **query_args.model_dump())
    return [TodoOut.model_validate(todo) for todo in todos]


@blueprint.post("/todos")
@validate_request(TodoCreate)
@validate_response(TodoOut, 201)
async def create_todo(data: TodoCreate) -> tuple[TodoOut, int, Headers]:
    session = get_session()
    todo = await queries.create_todo(session, data.task)
    await session.commit()
    return TodoOut.model_validate(todo), 201, Headers({"Location": f"/todos/{todo.id}"})


@blueprint.get("/todos/<id:todo_id>")
@validate_response(TodoOut)
async def get_todo(todo_id: int) -> TodoOut:
    return TodoOut.model_validate(await find_todo(todo_id))


@blueprint.put("/todos/<id:todo_id>")
@validate_request(TodoReplace)
@validate_response(TodoOut)
async def replace_todo(todo_id: int, data: TodoReplace) -> TodoOut:
    session = get_session()
    todo = await queries.update_todo(session, await find_todo(todo_id), **data.model_dump())
    await session.commit()
    return TodoOut.model_validate(todo)


@blueprint.patch("/todos/<id:todo_id>")
@validate_request(TodoPatch)
@validate_response(TodoOut)
async def patch_todo(todo_id: int, data: TodoPatch) -> TodoOut:
    changes = data.changes()
    if not changes:
        raise BadRequest("the body names no field to change")
    session = get_session()
    todo = await queries.update_todo(session, await find_todo(todo_id), **changes)
    await session.commit()
    return TodoOut.model_validate(todo)


@blueprint.delete("/todos/<id:todo_id>")
@document_response(NoContent, 204)
async def delete_todo(todo_id: int) -> tuple[str, int]:
    session = get_session()
    await queries.delete_todo(session, await find_todo(todo_id))
    await session.commit()
    return "", 204
