"""The API's Redis connection, made in `before_serving` when REDIS_URL is set."""

from __future__ import annotations

import asyncio

from quart import Quart, current_app
from redis.asyncio import Redis

from service.config import Settings


def init_redis(app: Quart, settings: Settings) -> None:
    if not settings.redis_url:
        return

    @app.before_serving
    async def _open() -> None:
        app.extensions["redis"] = Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=2,
            socket_timeout=2,
            health_check_interval=30,
        )

    @app.after_serving
    async def _close() -> None:
        client: Redis | None = app.extensions.pop("redis", None)
        if client is not None:
            await client.aclose()


def get_redis() -> Redis | None:
    return current_app.extensions.get("redis")


async def ping_redis(client: Redis, within_seconds: float) -> bool:
    try:
        async with asyncio.timeout(within_seconds):
            return bool(await client.ping())
    except Exception:
        return False
