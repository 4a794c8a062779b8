"""The connection pool without pre-ping: connections the server closed are replaced."""

from __future__ import annotations

import asyncio

import asyncpg

from service.app import create_app
from tests.conftest import TestServers, make_settings


async def _terminate_backends_of_the_test_database() -> int:
    """What a PostgreSQL restart or failover does to every pooled connection."""
    admin = await asyncpg.connect(TestServers.admin_url.replace("+asyncpg", ""))
    try:
        return await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            TestServers.database_name,
        )
    finally:
        await admin.close()


async def test_connections_the_server_closed_are_replaced_without_an_error(
    clean_tables: None,
) -> None:
    app = create_app(make_settings(db_pool_pre_ping=False))
    async with app.test_app():
        client = app.test_client()
        created = await client.post(
            "/products", json={"name": "Lamp", "price": 19.5, "category": "Home"}
        )
        assert created.status_code == 201
        product_id = (await created.get_json())["id"]
        assert (await client.get(f"/products/{product_id}")).status_code == 200

        assert await _terminate_backends_of_the_test_database() >= 1
        await asyncio.sleep(0.2)  # asyncpg reads the server's goodbye on the idle sockets

        read = await client.get(f"/products/{product_id}")
        assert read.status_code == 200, await read.get_data()
        assert (await read.get_json())["name"] == "Lamp"
        written = await client.post(
            "/products", json={"name": "Desk", "price": 120.0, "category": "Home"}
        )
        assert written.status_code == 201, await written.get_data()
        listed = await client.get("/products?limit=1000")
        assert {"Lamp", "Desk"} <= {product["name"] for product in await listed.get_json()}
