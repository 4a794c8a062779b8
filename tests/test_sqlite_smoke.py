"""The embedded SQLite default: migrate, seed the samples, and serve products and items."""

from __future__ import annotations

import asyncio
from pathlib import Path

from service.__main__ import migrate, seed
from service.app import create_app
from service.products.queries import SAMPLE_PRODUCTS
from tests.conftest import make_settings


async def test_products_and_items_on_sqlite(tmp_path: Path) -> None:
    settings = make_settings(database_url=f"sqlite:///{tmp_path / 'smoke.db'}", redis_url=None)
    await asyncio.to_thread(migrate, settings)
    await asyncio.to_thread(seed, settings)
    await asyncio.to_thread(seed, settings)  # a second run adds nothing

    app = create_app(settings)
    async with app.test_app() as test_app:
        client = test_app.test_client()

        products = await (await client.get("/products")).get_json()
        assert [product["name"] for product in products] == [row[0] for row in SAMPLE_PRODUCTS]

        created = await client.post("/items", json={"name": "Widget", "quantity": 2, "price": 3.5})
        assert created.status_code == 201
        item_id = (await created.get_json())["id"]

        patched = await client.patch(f"/items/{item_id}", json={"quantity": 7})
        assert (await patched.get_json())["quantity"] == 7

        listed = await (await client.get("/items", query_string={"name": "widg"})).get_json()
        assert [item["id"] for item in listed] == [item_id]

        assert (await client.delete(f"/items/{item_id}")).status_code == 204
        assert (await client.get(f"/items/{item_id}")).status_code == 404

        health = await (await client.get("/health")).get_json()
        assert health["status"] == "UP" and health["database"] == "connected"


async def test_realworld_flow_on_sqlite(tmp_path: Path) -> None:
    settings = make_settings(database_url=f"sqlite:///{tmp_path / 'conduit.db'}", redis_url=None)
    await asyncio.to_thread(migrate, settings)

    app = create_app(settings)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        user = {"username": "jake", "email": "Jake@Example.com", "password": "jakejakejake"}
        registered = await client.post("/api/users", json={"user": user})
        assert registered.status_code == 201
        token = (await registered.get_json())["user"]["token"]
        headers = {"Authorization": f"Token {token}"}

        article = {
            "title": "How To Train",
            "description": "Dragons",
            "body": "Believe",
            "tagList": ["b", "a"],
        }
        created = await client.post("/api/articles", json={"article": article}, headers=headers)
        assert created.status_code == 201
        slug = (await created.get_json())["article"]["slug"]

        favorited = await client.post(f"/api/articles/{slug}/favorite", headers=headers)
        assert (await favorited.get_json())["article"]["favoritesCount"] == 1

        for term in ("how to", "DRAGONS", "believ"):
            found = await (
                await client.get("/api/articles/", query_string={"search": term})
            ).get_json()
            assert found["articlesCount"] == 1, term
        missing = await (await client.get("/api/articles", query_string={"search": "%"})).get_json()
        assert missing["articlesCount"] == 0

        assert (await client.delete(f"/api/articles/{slug}", headers=headers)).status_code == 204
        again = await client.post("/api/articles", json={"article": article}, headers=headers)
        assert (await again.get_json())["article"]["slug"] != slug  # ids are not reused
