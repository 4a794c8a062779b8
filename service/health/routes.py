from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from quart import Blueprint, Response, current_app
from quart_schema import hide, validate_response

from service.health.readiness import check_database
from service.health.schemas import (
    BackgroundHealthOut,
    DependenciesOut,
    HealthOut,
    LivenessOut,
    ReadinessOut,
)
from service.metrics import render_metrics
from service.queue import get_redis, ping_redis, queue_state

blueprint = Blueprint("health", __name__)
# Registered only where /metrics is answered on the API's own port (app.py).
metrics_blueprint = Blueprint("metrics", __name__)

# A probe must answer well inside the orchestrator's timeout, even with a dependency black-holed.
CHECK_TIMEOUT_SECONDS = 1.5


async def _database_ok() -> bool:
    return (await check_database()).reachable


async def _redis_ok() -> bool | None:
    """None when no Redis is configured (jobs run in-process)."""
    redis = get_redis()
    return None if redis is None else await ping_redis(redis, CHECK_TIMEOUT_SECONDS)


async def _worker_state() -> tuple[bool, int | None]:
    """(a worker checked in recently, queue depth); (False, None) when Redis does not answer."""
    redis = get_redis()
    assert redis is not None
    try:
        return await queue_state(redis, CHECK_TIMEOUT_SECONDS)
    except Exception:
        return False, None


@blueprint.get("/health")
@validate_response(HealthOut, 200)
@validate_response(HealthOut, 503)
async def health() -> tuple[HealthOut, int]:
    connected = await _database_ok()
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
    database, redis_ok = await asyncio.gather(check_database(), _redis_ok())
    checks = {
        "database": "ok" if database.reachable else "failing",
        "schema": database.schema,  # behind the code: every request would fail
        "redis": "not configured" if redis_ok is None else ("ok" if redis_ok else "failing"),
    }
    # Only the database decides: without Redis only exports are refused (503) while reads
    # and writes go on, and a failing readiness would take every pod out of the Service.
    ready = database.ready
    return ReadinessOut(status="ready" if ready else "not ready", checks=checks), (
        200 if ready else 503
    )


@blueprint.get("/healthz/background")
@validate_response(BackgroundHealthOut, 200)
@validate_response(BackgroundHealthOut, 503)
async def background_health() -> tuple[BackgroundHealthOut, int]:
    if get_redis() is None:
        body = BackgroundHealthOut(
            status="ok",
            mode="in-process",
            redis="not configured",
            worker="in-process",
            queue_depth=None,
        )
        return body, 200
    redis_ok = await _redis_ok()
    worker_alive, depth = await _worker_state() if redis_ok else (False, None)
    healthy = bool(redis_ok) and worker_alive
    body = BackgroundHealthOut(
        status="ok" if healthy else "failing",
        mode="arq",
        redis="ok" if redis_ok else "failing",
        worker="alive" if worker_alive else "missing",
        queue_depth=depth,
    )
    return body, 200 if healthy else 503


@blueprint.get("/api/health", strict_slashes=False)
@validate_response(DependenciesOut, 200)
@validate_response(DependenciesOut, 503)
async def dependencies_health() -> tuple[DependenciesOut, int]:
    database_ok, redis_ok = await asyncio.gather(_database_ok(), _redis_ok())
    if redis_ok is None:
        redis, worker = "not configured", "in-process"
    else:
        redis = "connected" if redis_ok else "disconnected"
        worker = "alive" if redis_ok and (await _worker_state())[0] else "missing"
    up = database_ok and redis != "disconnected" and worker != "missing"
    body = DependenciesOut(
        status="UP" if up else "DOWN",
        database="connected" if database_ok else "disconnected",
        redis=redis,  # type: ignore[arg-type]
        worker=worker,  # type: ignore[arg-type]
    )
    return body, 200 if up else 503


@metrics_blueprint.get("/metrics")
@hide
async def metrics() -> Response:
    """Prometheus text format: the sum over every worker process (multiprocess mode)."""
    body, content_type = render_metrics()
    return Response(body, content_type=content_type)
