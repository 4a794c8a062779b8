from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from quart import Blueprint, current_app
from quart_schema import validate_response

from service.db import get_database, ping_database
from service.health.schemas import HealthOut, LivenessOut, ReadinessOut
from service.redis_client import get_redis, ping_redis

blueprint = Blueprint("health", __name__)

# A probe must answer well inside the orchestrator's timeout, even with the database black-holed.
CHECK_TIMEOUT_SECONDS = 1.5


@blueprint.get("/health")
@validate_response(HealthOut, 200)
@validate_response(HealthOut, 503)
async def health() -> tuple[HealthOut, int]:
    connected = await ping_database(get_database().engine, CHECK_TIMEOUT_SECONDS)
    body = HealthOut(
        status="UP" if connected else "DOWN",
        service=current_app.config["SERVICE_NAME"],
        database="connected" if connected else "disconnected",
        timestamp=datetime.now(UTC).isoformat(),
    )
    return body, 200 if connected else 503


@blueprint.get("/healthz")
@validate_response(LivenessOut)
async def liveness() -> LivenessOut:
    return LivenessOut(status="ok")


@blueprint.get("/readyz")
@validate_response(ReadinessOut, 200)
@validate_response(ReadinessOut, 503)
async def readiness() -> tuple[ReadinessOut, int]:
    redis = get_redis()
    database_ok, redis_ok = await asyncio.gather(
        ping_database(get_database().engine, CHECK_TIMEOUT_SECONDS),
        ping_redis(redis, CHECK_TIMEOUT_SECONDS) if redis is not None else _none(),
    )
    checks = {
        "database": "ok" if database_ok else "failing",
        "redis": "not configured" if redis is None else ("ok" if redis_ok else "failing"),
    }
    ready = all(state != "failing" for state in checks.values())
    return ReadinessOut(status="ready" if ready else "not ready", checks=checks), (
        200 if ready else 503
    )


async def _none() -> None:
    return None
