from __future__ import annotations

from datetime import datetime
from typing import Any, NoReturn

from quart import Blueprint, Response
from quart_schema import (
    document_headers,
    document_response,
    validate_querystring,
    validate_request,
    validate_response,
)
from sqlalchemy.ext.asyncio import AsyncSession
from werkzeug.datastructures import Headers

from service.db import get_session, reading
from service.errors import BadRequest, NotFound
from service.items import queries
from service.items.etags import (
    PreconditionFailed,
    etag_header,
    has_if_match,
    if_match_is_star,
    if_match_names,
    if_none_match_names,
)
from service.items.schemas import (
    ItemCreate,
    ItemList,
    ItemOut,
    ItemPatch,
    ItemQuery,
    ItemReadHeaders,
    ItemReplace,
    ItemWriteHeaders,
)
from service.openapi import NoContent, documents_errors

blueprint = Blueprint("items", __name__)

ItemWithETag = tuple[ItemOut, int, Headers]


async def _version_named_by_if_match(session: AsyncSession, item_id: int) -> datetime | None:
    """With If-Match: the updated_at of the version it names, which the write then requires
    (412 when it names another). None without If-Match, or with `*`: any version will do.

    A missing item stays a 404 whatever the preconditions (RFC 9110, 13.2.1)."""
    if not has_if_match():
        return None
    row = await queries.find_item(session, item_id)
    if row is None:
        raise NotFound(f"item {item_id} not found")
    if if_match_is_star():
        return None
    if not if_match_names(ItemOut.model_validate(row)):
        raise PreconditionFailed(f"item {item_id} does not match If-Match: fetch it again")
    return row["updated_at"]


def _missing_or_changed(item_id: int, version: datetime | None) -> NoReturn:
    if version is None:
        raise NotFound(f"item {item_id} not found")
    # It matched a moment ago: another request changed or deleted it in between.
    raise PreconditionFailed(f"item {item_id} changed meanwhile, If-Match no longer holds")


async def _update(item_id: int, changes: dict[str, Any]) -> ItemWithETag:
    session = get_session()
    version = await _version_named_by_if_match(session, item_id)
    row = await queries.update_item(session, item_id, changes, if_updated_at=version)
    if row is None:
        _missing_or_changed(item_id, version)
    await session.commit()
    item = ItemOut.model_validate(row)
    return item, 200, etag_header(item)


@blueprint.get("/items")
@validate_querystring(ItemQuery)
@validate_response(ItemList)
async def list_items(query_args: ItemQuery) -> ItemList:
    async with reading() as connection:
        items = await queries.list_items(connection, **query_args.model_dump())
    return ItemList.model_validate(items)


@blueprint.get("/items/<id:item_id>")
@document_headers(ItemReadHeaders)
@validate_response(ItemOut)
async def get_item(item_id: int) -> ItemWithETag | Response:
    """One item, with its ETag; 304 without a body when If-None-Match names it."""
    async with reading() as connection:
        row = await queries.find_item(connection, item_id)
    if row is None:
        raise NotFound(f"item {item_id} not found")
    item = ItemOut.model_validate(row)
    if if_none_match_names(item):
        return Response(status=304, headers=etag_header(item))
    return item, 200, etag_header(item)


@blueprint.post("/items")
@validate_request(ItemCreate)
@validate_response(ItemOut, 201)
async def create_item(data: ItemCreate) -> ItemWithETag:
    session = get_session()
    created = await queries.create_item(session, **data.model_dump())
    await session.commit()
    item = ItemOut.model_validate(created)
    headers = etag_header(item)
    headers["Location"] = f"/items/{item.id}"
    return item, 201, headers


@blueprint.put("/items/<id:item_id>")
@document_headers(ItemWriteHeaders)
@validate_request(ItemReplace)
@validate_response(ItemOut)
@documents_errors(412)  # If-Match names another version
async def replace_item(item_id: int, data: ItemReplace) -> ItemWithETag:
    """Replace every field; with If-Match only while the item is that version (else 412)."""
    return await _update(item_id, data.model_dump())


@blueprint.patch("/items/<id:item_id>")
@document_headers(ItemWriteHeaders)
@validate_request(ItemPatch)
@validate_response(ItemOut)
@documents_errors(412)  # If-Match names another version
async def patch_item(item_id: int, data: ItemPatch) -> ItemWithETag:
    """Change the given fields; with If-Match only while the item is that version (else 412)."""
    changes = data.changes()
    if not changes:
        raise BadRequest("the body names no field to change")
    return await _update(item_id, changes)


@blueprint.delete("/items/<id:item_id>")
@document_response(NoContent, 204)
@document_headers(ItemWriteHeaders)
@documents_errors(412)  # If-Match names another version
async def delete_item(item_id: int) -> tuple[str, int]:
    """Delete the item (204); with If-Match only while it is that version (else 412)."""
    session = get_session()
    version = await _version_named_by_if_match(session, item_id)
    if not await queries.delete_item(session, item_id, if_updated_at=version):
        _missing_or_changed(item_id, version)
    await session.commit()
    return "", 204
