"""What an export's status says beyond its row: that it waits for a worker that is not there."""

from __future__ import annotations

import logging
from datetime import UTC, timedelta

from quart import current_app
from redis.exceptions import RedisError

from service.db import utc_now
from service.exports.models import Export
from service.queue import get_redis, queue_state

logger = logging.getLogger(__name__)
NO_WORKER_NOTICE = "no worker is running; the export starts when one does"


async def no_worker_notice(export: Export) -> str | None:
    """NO_WORKER_NOTICE for an export queued while no worker checks in; else None.

    arq's health-check key outlives a worker's last check-in by one interval and a second:
    absent, with the export queued for two intervals, no worker has been taking jobs.
    In-process mode (no Redis) needs no worker. Redis is asked only about an export queued
    that long, within a second, and its failure only leaves the notice out: a status
    request never fails or hangs on it.
    """
    redis = get_redis()
    if export.status != "queued" or redis is None:
        return None
    interval = current_app.extensions["settings"].worker_health_check_interval
    created_at = export.created_at
    if created_at.tzinfo is None:  # SQLite keeps no time zone; we store UTC
        created_at = created_at.replace(tzinfo=UTC)
    if utc_now() - created_at < timedelta(seconds=2 * interval):
        return None
    try:
        worker_alive, _depth = await queue_state(redis, within_seconds=1)
    except (RedisError, OSError, TimeoutError) as error:
        logger.warning("export %s: no worker check: %s", export.id, type(error).__name__)
        return None
    return None if worker_alive else NO_WORKER_NOTICE
