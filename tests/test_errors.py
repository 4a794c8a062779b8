"""The error contract, the request id, and "a refused request writes nothing"."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from quart.testing import QuartClient
from quart.wrappers import Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service.app import create_app
from service.items.models import Item
from service.products.models import Product
from tests.conftest import make_settings
from tests.factories import make_item, make_product

JSON_HEADERS = {"Content-Type": "application/json"}


async def error_of(response: Response) -> dict[str, Any]:
    """The `error` object, after checking it is JSON and carries the response's request id."""
    assert response.content_type == "application/json"
    body = await response.get_json()
    assert set(body) == {"error"}
    error = body["error"]
    assert error["status"] == response.status_code
    assert error["request_id"] == response.headers["X-Request-ID"]
    return error


def assert_uuid4(value: str) -> None:
    parsed = uuid.UUID(value)
    assert parsed.version == 4
    assert str(parsed) == value


async def rows(session: AsyncSession, model: type[Item] | type[Product]) -> list[dict[str, Any]]:
    """Every row as stored now (a Core select: never the session's cached objects)."""
    table = model.__table__
    result = await session.execute(select(table).order_by(table.c.id))
    return [dict(row) for row in result.mappings()]


# --- shape ----------------------------------------------------------------------------


async def test_error_shape_without_details(client: QuartClient) -> None:
    response = await client.get("/items/424242")

    assert response.status_code == 404
    error = await error_of(response)
    assert set(error) == {"status", "message", "request_id"}
    assert error["message"] == "item 424242 not found"


async def test_error_shape_with_details(client: QuartClient) -> None:
    response = await client.post("/items", json={"name": ""})

    assert response.status_code == 422
    error = await error_of(response)
    assert set(error) == {"status", "message", "request_id", "details"}
    [detail] = error["details"]
    assert detail["field"] == "name"
    assert "at least 1 character" in detail["message"]


# --- routing --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/nope", "/items/1/extra", "/products/abc", "/items/"])
async def test_unknown_route_is_json_404(client: QuartClient, path: str) -> None:
    response = await client.get(path, headers={"Accept": "text/html"})

    assert response.status_code == 404
    error = await error_of(response)
    assert error["message"] == "not found"
    assert b"<html" not in (await response.get_data()).lower()


async def test_wrong_method_is_405_with_allow(client: QuartClient) -> None:
    response = await client.delete("/products")

    assert response.status_code == 405
    error = await error_of(response)
    assert error["message"] == "method not allowed"
    allowed = {method.strip() for method in response.headers["Allow"].split(",")}
    assert {"GET", "POST"} <= allowed
    assert "DELETE" not in allowed


async def test_wrong_method_on_an_item_is_405(client: QuartClient) -> None:
    response = await client.post("/items/1", json={})

    assert response.status_code == 405
    allowed = {method.strip() for method in response.headers["Allow"].split(",")}
    assert {"GET", "PUT", "PATCH", "DELETE"} <= allowed
    assert "POST" not in allowed
    await error_of(response)


# --- bodies -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"{", id="truncated"),
        pytest.param(b'{"name": "a",}', id="trailing comma"),
        pytest.param(b"not json", id="not json"),
        pytest.param(b'{"name": "caf\xe9"}', id="not utf-8"),
    ],
)
async def test_malformed_json_is_400(
    client: QuartClient, session: AsyncSession, data: bytes
) -> None:
    response = await client.post("/items", data=data, headers=JSON_HEADERS)

    assert response.status_code == 400
    assert (await error_of(response))["message"] == "malformed JSON body"
    assert await rows(session, Item) == []


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
async def test_text_plain_body_is_415(
    client: QuartClient, session: AsyncSession, method: str
) -> None:
    item = await make_item(session)
    path = "/items" if method == "POST" else f"/items/{item.id}"

    response = await client.open(
        path, method=method, data=json.dumps({"name": "a"}), headers={"Content-Type": "text/plain"}
    )

    assert response.status_code == 415
    assert "application/json" in (await error_of(response))["message"]
    assert len(await rows(session, Item)) == 1


async def test_body_over_max_content_length_is_413(clean_tables: None) -> None:
    small = create_app(make_settings(max_content_length=2048))
    async with small.test_app():
        client = small.test_client()
        body = {"name": "big", "description": "x" * 4096}

        too_big = await client.post("/items", json=body)
        fits = await client.post("/items", json={"name": "small"})

        assert too_big.status_code == 413
        assert (await error_of(too_big))["message"] == "request entity too large"
        assert fits.status_code == 201
        database = small.extensions["database"]
        async with database.sessionmaker() as session:
            assert [row["name"] for row in await rows(session, Item)] == ["small"]


async def test_default_limit_is_one_mebibyte(client: QuartClient, session: AsyncSession) -> None:
    response = await client.post("/items", json={"name": "big", "description": "x" * 1_100_000})

    assert response.status_code == 413
    await error_of(response)
    assert await rows(session, Item) == []


@pytest.mark.parametrize("data", [b"[]", b"null", b"1", b'"name"'])
async def test_json_body_that_is_not_an_object_is_422(
    client: QuartClient, session: AsyncSession, data: bytes
) -> None:
    response = await client.post("/items", data=data, headers=JSON_HEADERS)

    assert response.status_code == 422
    assert (await error_of(response))["details"][0]["field"] == ""
    assert await rows(session, Item) == []


@pytest.mark.parametrize(
    "data",
    [
        pytest.param("[" * 100_000, id="unclosed arrays"),
        pytest.param("[" * 100_000 + "]" * 100_000, id="closed arrays"),
        pytest.param('{"a":' * 100_000 + "1" + "}" * 100_000, id="objects"),
    ],
)
async def test_deeply_nested_json_is_refused(
    client: QuartClient, session: AsyncSession, data: str
) -> None:
    """100,000 brackets are over MAX_JSON_VALUES: refused before the parser runs (413);
    with the cap raised that far, the parser's own refusal of the depth is a 400."""
    response = await client.post("/items", data=data, headers=JSON_HEADERS)

    assert response.status_code == 413
    assert "more than 1000 keys and items" in (await error_of(response))["message"]
    assert await rows(session, Item) == []

    lenient = create_app(make_settings(max_json_values=100_000))
    async with lenient.test_app():
        response = await lenient.test_client().post("/items", data=data, headers=JSON_HEADERS)

    assert response.status_code == 400
    assert (await error_of(response))["message"] == "malformed JSON body"
    assert await rows(session, Item) == []


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ('{"name":"a","price":NaN}', "price"),
        ('{"name":"a","price":Infinity}', "price"),
        ('{"name":"a","price":-Infinity}', "price"),
        ('{"name":"a","quantity":NaN}', "quantity"),
    ],
)
async def test_nan_and_infinity_are_refused(
    client: QuartClient, session: AsyncSession, data: str, field: str
) -> None:
    response = await client.post("/items", data=data, headers=JSON_HEADERS)

    assert 400 <= response.status_code < 500
    error = await error_of(response)
    if response.status_code == 422:
        assert field in [detail["field"] for detail in error["details"]]
    assert await rows(session, Item) == []


# --- unexpected exceptions --------------------------------------------------------------


async def test_unexpected_exception_is_a_bare_500(
    log_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    broken = create_app(make_settings())

    @broken.get("/boom")
    async def boom() -> str:
        raise RuntimeError("secret detail")

    async with broken.test_app():
        response = await broken.test_client().get("/boom")

    assert response.status_code == 500
    error = await error_of(response)
    assert set(error) == {"status", "message", "request_id"}
    assert error["message"] == "internal server error"
    assert b"secret detail" not in await response.get_data()
    assert b"RuntimeError" not in await response.get_data()
    errors = [line for line in log_lines() if line["level"] == "ERROR"]
    assert [line["request_id"] for line in errors] == [error["request_id"]]


# --- X-Request-ID -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "incoming",
    [
        pytest.param("abc", id="word"),
        pytest.param("req-1.2_3", id="punctuation"),
        pytest.param("A" * 128, id="128 chars"),
        pytest.param("7d0f3f0e-8f5e-4d55-9a3c-1b2e4f6a8c9d", id="uuid"),
    ],
)
async def test_sane_request_id_is_echoed(client: QuartClient, incoming: str) -> None:
    response = await client.get("/items", headers={"X-Request-ID": incoming})

    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == incoming


async def test_sane_request_id_is_echoed_in_an_error(client: QuartClient) -> None:
    response = await client.get("/items/424242", headers={"X-Request-ID": "trace-42"})

    assert response.headers["X-Request-ID"] == "trace-42"
    assert (await error_of(response))["request_id"] == "trace-42"


@pytest.mark.parametrize(
    "incoming",
    [
        pytest.param("A" * 129, id="too long"),
        pytest.param("has space", id="space"),
        pytest.param("caf\u00e9", id="unicode"),
        pytest.param("", id="empty"),
        pytest.param("a/b", id="slash"),
        pytest.param("x'; DROP TABLE items; --", id="sql"),
        pytest.param("a\tb", id="tab"),
    ],
)
async def test_insane_request_id_is_replaced(client: QuartClient, incoming: str) -> None:
    response = await client.get("/items/424242", headers={"X-Request-ID": incoming})

    request_id = response.headers["X-Request-ID"]
    assert request_id != incoming
    assert_uuid4(request_id)
    assert (await error_of(response))["request_id"] == request_id


async def test_missing_request_id_gets_a_new_uuid4(client: QuartClient) -> None:
    first = await client.get("/items")
    second = await client.get("/items")

    assert_uuid4(first.headers["X-Request-ID"])
    assert_uuid4(second.headers["X-Request-ID"])
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]


async def test_every_response_has_one_request_id(client: QuartClient) -> None:
    responses = [
        await client.get("/items"),
        await client.post("/items", json={"name": "a"}),
        await client.get("/nope"),
        await client.delete("/products"),
        await client.post("/items", data=b"x", headers={"Content-Type": "text/plain"}),
        await client.post("/items", json={}),
        await client.get("/items", query_string={"limit": 0}),
        await client.post("/items", data=b"{", headers=JSON_HEADERS),
    ]

    assert [response.status_code for response in responses] == [
        200,
        201,
        404,
        405,
        415,
        422,
        400,
        400,
    ]
    for response in responses:
        assert len(response.headers.getlist("X-Request-ID")) == 1
        assert_uuid4(response.headers["X-Request-ID"])
        if response.status_code >= 400:
            await error_of(response)


# --- a refused request writes nothing -------------------------------------------------------


async def test_bad_requests_write_nothing(client: QuartClient, session: AsyncSession) -> None:
    item = await make_item(session, name="original", description="keep", quantity=1, price=1.0)
    await make_product(session, name="original product")
    items_before = await rows(session, Item)
    products_before = await rows(session, Product)
    path = f"/items/{item.id}"
    full = {"name": "changed", "description": None, "quantity": 2, "price": 2.0}

    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/items", {"json": {"name": "a", "quantity": -1}}),
        ("POST", "/items", {"json": {"name": "a", "extra": 1}}),
        ("POST", "/items", {"data": b"{", "headers": JSON_HEADERS}),
        ("POST", "/items", {"data": json.dumps(full), "headers": {"Content-Type": "text/plain"}}),
        ("POST", "/items", {"data": '{"name":"a","price":NaN}', "headers": JSON_HEADERS}),
        ("POST", "/products", {"json": {"name": "p", "price": -1, "category": "x"}}),
        ("POST", "/products", {"json": {"name": "p", "price": 1, "category": "x", "id": 9}}),
        ("PUT", path, {"json": {**full, "quantity": "2"}}),
        ("PUT", path, {"json": {key: full[key] for key in ("name", "quantity", "price")}}),
        ("PUT", path, {"json": {**full, "id": 999}}),
        ("PUT", "/items/424242", {"json": full}),
        ("PATCH", path, {"json": {"name": None}}),
        ("PATCH", path, {"json": {"quantity": 3, "created_at": "2000-01-01T00:00:00+00:00"}}),
        ("PATCH", path, {"json": {}}),
        ("PATCH", path, {"data": b"[" * 100_000, "headers": JSON_HEADERS}),
        ("DELETE", "/items/424242", {}),
    ]
    statuses = []
    for method, target, options in calls:
        statuses.append((await client.open(target, method=method, **options)).status_code)

    assert all(400 <= status < 500 for status in statuses), statuses
    assert await rows(session, Item) == items_before
    assert await rows(session, Product) == products_before
