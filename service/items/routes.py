from __future__ import annotations

from quart import Blueprint
from quart_schema import validate_querystring, validate_request, validate_response

from service.db import get_session, reading
from service.errors import BadRequest, NotFound
from service.items import queries
from service.items.models import Item
from service.items.schemas import ItemCreate, ItemList, ItemOut, ItemPatch, ItemQuery, ItemReplace

blueprint = Blueprint("items", __name__)


async def _existing_item(item_id: int) -> Item:
    item = await queries.get_item(get_session(), item_id)
    if item is None:
        raise NotFound(f"item {item_id} not found")
    return item


@blueprint.get("/items")
@validate_querystring(ItemQuery)
@validate_response(ItemList)
async def list_items(query_args: ItemQuery) -> ItemList:
    async with reading() as connection:
        items = await queries.list_items(connection, **query_args.model_dump())
    return ItemList.model_validate(items)


@blueprint.get("/items/<id:item_id>")
@validate_response(ItemOut)
async def get_item(item_id: int) -> ItemOut:
    async with reading() as connection:
        item = await queries.find_item(connection, item_id)
    if item is None:
        raise NotFound(f"item {item_id} not found")
    return ItemOut.model_validate(item)


@blueprint.post("/items")
@validate_request(ItemCreate)
@validate_response(ItemOut, 201)
async def create_item(data: ItemCreate) -> tuple[ItemOut, int, dict[str, str]]:
    session = get_session()
    item = await queries.create_item(session, **data.model_dump())
    await session.commit()
    return ItemOut.model_validate(item), 201, {"Location": f"/items/{item.id}"}


@blueprint.put("/items/<id:item_id>")
@validate_request(ItemReplace)
@validate_response(ItemOut)
async def replace_item(item_id: int, data: ItemReplace) -> ItemOut:
    session = get_session()
    item = await queries.update_item(session, await _existing_item(item_id), **data.model_dump())
    await session.commit()
    return ItemOut.model_validate(item)


@blueprint.patch("/items/<id:item_id>")
@validate_request(ItemPatch)
@validate_response(ItemOut)
async def patch_item(item_id: int, data: ItemPatch) -> ItemOut:
    changes = data.changes()
    if not changes:
        raise BadRequest("the body names no field to change")
    session = get_session()
    item = await queries.update_item(session, await _existing_item(item_id), **changes)
    await session.commit()
    return ItemOut.model_validate(item)


@blueprint.delete("/items/<id:item_id>")
async def delete_item(item_id: int) -> tuple[str, int]:
    session = get_session()
    await queries.delete_item(session, await _existing_item(item_id))
    await session.commit()
    return "", 204
