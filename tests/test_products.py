from __future__ import annotations

from datetime import datetime

from quart.testing import QuartClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.products.models import Product
from tests.factories import make_product


async def count_products(session: AsyncSession) -> int:
    return await session.scalar(select(func.count()).select_from(Product)) or 0


async def test_list_products_in_id_order(client: QuartClient, session: AsyncSession) -> None:
    first = await make_product(session, name="Lamp", price=19.5, category="Home")
    second = await make_product(session, name="Desk", price=120.0, category="Home")

    response = await client.get("/products")

    assert response.status_code == 200
    body = await response.get_json()
    assert [product["id"] for product in body] == [first.id, second.id]
    assert body[0]["name"] == "Lamp"
    assert body[0]["price"] == 19.5
    assert datetime.fromisoformat(body[0]["created_at"]).tzinfo is not None


async def test_get_product(client: QuartClient, session: AsyncSession) -> None:
    product = await make_product(session, name="Chair", price=45.0, category="Home")

    response = await client.get(f"/products/{product.id}")

    assert response.status_code == 200
    assert await response.get_json() == {
        "id": product.id,
        "name": "Chair",
        "price": 45.0,
        "category": "Home",
        "created_at": (await response.get_json())["created_at"],
    }


async def test_unknown_product_is_404(client: QuartClient) -> None:
    response = await client.get("/products/424242")

    assert response.status_code == 404
    error = (await response.get_json())["error"]
    assert error["status"] == 404
    assert "424242" in error["message"]


async def test_create_product_stores_the_row(client: QuartClient, session: AsyncSession) -> None:
    response = await client.post(
        "/products", json={"name": "iPad Pro", "price": 1199.0, "category": "Tablettes"}
    )

    assert response.status_code == 201
    body = await response.get_json()
    assert body["name"] == "iPad Pro" and body["price"] == 1199.0
    assert response.headers["Location"] == f"/products/{body['id']}"
    stored = await session.get(Product, body["id"])
    assert stored is not None and stored.category == "Tablettes"


async def test_invalid_products_are_refused_and_nothing_is_written(
    client: QuartClient, session: AsyncSession
) -> None:
    cases = [
        ({"price": 1.0, "category": "x"}, "name"),
        ({"name": "a", "price": -1, "category": "x"}, "price"),
        ({"name": "a", "price": "12", "category": "x"}, "price"),
        ({"name": "x" * 201, "price": 1, "category": "x"}, "name"),
        ({"name": "a", "price": 1, "category": "y" * 101}, "category"),
        ({"name": "", "price": 1, "category": "x"}, "name"),
        ({"name": "a\x00b", "price": 1, "category": "x"}, "name"),
        ({"name": "a", "price": 1, "category": "x", "extra": True}, "extra"),
    ]
    for body, field in cases:
        response = await client.post("/products", json=body)
        assert response.status_code == 422, body
        error = (await response.get_json())["error"]
        assert field in [detail["field"] for detail in error["details"]], body

    assert await count_products(session) == 0


async def test_product_pagination(client: QuartClient, session: AsyncSession) -> None:
    made = [await make_product(session) for _ in range(5)]

    response = await client.get("/products", query_string={"limit": 2, "offset": 1})

    assert [product["id"] for product in await response.get_json()] == [made[1].id, made[2].id]
    assert (await client.get("/products", query_string={"limit": 0})).status_code == 400
