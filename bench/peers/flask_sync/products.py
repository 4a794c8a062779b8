"""The backend seed's products, as its Flask app serves them."""

from __future__ import annotations

import math
from typing import Any

from db import session
from errors import APIError, int_arg, invalid
from flask import Blueprint, Response, jsonify, request
from models import Product
from sqlalchemy import select
from werkzeug.exceptions import BadRequest

blueprint = Blueprint("products", __name__)

MAX_ID = 2_147_483_647
MAX_PRICE = 1e12


def _required(data: dict[str, Any], field: str) -> Any:
    if field not in data:
        raise invalid(field, "Field required", where="request body")
    return data[field]


def _text(data: dict[str, Any], field: str, max_length: int) -> str:
    # The messages are pydantic's, so a client sees what the service would tell it.
    value = _required(data, field)
    if not isinstance(value, str):
        raise invalid(field, "Input should be a valid string", where="request body")
    if not value:
        raise invalid(field, "String should have at least 1 character", where="request body")
    if len(value) > max_length:
        message = f"String should have at most {max_length} characters"
        raise invalid(field, message, where="request body")
    if "\x00" in value:  # PostgreSQL cannot store it
        raise invalid(field, "must not contain NUL characters", where="request body")
    return value


def _price(data: dict[str, Any]) -> float:
    value = _required(data, "price")
    # bool is an int in Python; JSON true is not a price.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid("price", "Input should be a valid number", where="request body")
    if not math.isfinite(value):  # Python's json accepts NaN and Infinity
        raise invalid("price", "Input should be a finite number", where="request body")
    if value < 0:
        raise invalid("price", "Input should be greater than or equal to 0", where="request body")
    if value > MAX_PRICE:
        message = f"Input should be less than or equal to {int(MAX_PRICE)}"
        raise invalid("price", message, where="request body")
    return float(value)


@blueprint.get("/products")
def list_products() -> Response:
    limit = int_arg("limit", 100, 1, 1000)
    offset = int_arg("offset", 0, 0, MAX_ID)
    statement = select(Product).order_by(Product.id).limit(limit).offset(offset)
    products = session().scalars(statement).all()
    return jsonify([product.to_dict() for product in products])


@blueprint.get("/products/<id:product_id>")
def get_product(product_id: int) -> Response:
    product = session().get(Product, product_id)
    if product is None:
        raise APIError(404, f"product {product_id} not found")
    return jsonify(product.to_dict())


@blueprint.post("/products")
def create_product() -> tuple[Response, int, dict[str, str]]:
    if not request.is_json:
        raise APIError(415, "send the body as application/json")
    try:
        data = request.get_json()
    except BadRequest:
        raise APIError(400, "malformed JSON body") from None
    if not isinstance(data, dict):
        detail = {
            "field": "",
            "message": "Input should be a valid dictionary or instance of ProductCreate",
        }
        raise APIError(422, "invalid request body", [detail])
    unknown = sorted(set(data) - {"name", "price", "category"})
    if unknown:
        raise invalid(unknown[0], "Extra inputs are not permitted", where="request body")
    product = Product(
        name=_text(data, "name", 200), price=_price(data), category=_text(data, "category", 100)
    )
    db = session()
    db.add(product)
    db.commit()
    # to_dict() after the commit reloads the row (expire_on_commit), as the seed's app does.
    return jsonify(product.to_dict()), 201, {"Location": f"/products/{product.id}"}
