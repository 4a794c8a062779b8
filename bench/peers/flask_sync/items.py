"""The items seed's list and detail routes."""

from __future__ import annotations

from db import session
from errors import APIError, int_arg, invalid
from flask import Blueprint, Response, jsonify, request
from models import Item
from sqlalchemy import select

blueprint = Blueprint("items", __name__)

MAX_ID = 2_147_483_647
# The service's whitelist; "-" in front sorts descending.
SORTABLE_COLUMNS = ("id", "name", "quantity", "price", "created_at", "updated_at")


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _sort() -> str:
    sort = request.args.get("sort", "id")
    if sort.removeprefix("-") not in SORTABLE_COLUMNS:
        allowed = ", ".join(SORTABLE_COLUMNS)
        raise invalid("sort", f"unknown sort column; allowed: {allowed} (prefix '-' to descend)")
    return sort


@blueprint.get("/items")
def list_items() -> Response:
    limit = int_arg("limit", 20, 1, 100)
    offset = int_arg("offset", 0, 0, MAX_ID)
    sort = _sort()
    name = request.args.get("name")
    if name is not None and (len(name) > 200 or "\x00" in name):
        raise invalid("name", "String should have at most 200 characters")

    column = getattr(Item, sort.removeprefix("-"))  # whitelisted above
    descending = sort.startswith("-")
    order = [column.desc() if descending else column.asc()]
    if column is not Item.id:
        order.append(Item.id.desc() if descending else Item.id.asc())  # stable pages
    statement = select(Item).order_by(*order).limit(limit).offset(offset)
    if name:
        statement = statement.where(Item.name.ilike(f"%{_escape_like(name)}%", escape="\\"))
    items = session().scalars(statement).all()
    return jsonify([item.to_dict() for item in items])


@blueprint.get("/items/<id:item_id>")
def get_item(item_id: int) -> Response:
    item = session().get(Item, item_id)
    if item is None:
        raise APIError(404, f"item {item_id} not found")
    return jsonify(item.to_dict())
