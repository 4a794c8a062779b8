"""What the arq worker runs with; `jobs.worker.WorkerSettings` reads it.

The worker owns its engine and Redis pool (made in `startup`, closed in `shutdown`),
serialises jobs as JSON like the API, refreshes its health-check key every
WORKER_HEALTH_CHECK_INTERVAL seconds (read by /healthz/background), and on SIGTERM
gives the job in hand WORKER_JOB_COMPLETION_WAIT seconds before cancelling it; a
cancelled or killed job is picked up again and still writes exactly one export.
"""

from __future__ import annotations

import logging
from typing import Any

from arq import cron, func
from arq.connections import RedisSettings
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.ext.asyncio import async_sessionmaker

from jobs.cleanup import purge_exports
from jobs.export import export_todos_for_arq
from service.config import ConfigError, Settings, load_settings
from service.db import make_engine
from service.exports.life import JOB_NAME
from service.logs import configure_logging, mask_url_passwords
from service.metrics import instrument_engine, start_metrics_server
from service.queue import QUEUE_NAME, deserialize_job, serialize_job
from service.telemetry import setup_telemetry

logger = logging.getLogger(__name__)


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx.get("settings") or load_settings()
    configure_logging(settings.log_level, settings.service_name)
    engine = make_engine(settings)
    setup_telemetry(settings, role="worker")
    instrument_engine(engine)
    _serve_metrics(settings.worker_metrics_port)
    ctx["settings"] = settings
    ctx["engine"] = engine
    ctx["sessionmaker"] = async_sessionmaker(engine, expire_on_commit=False)
    logger.info("worker started on %s", mask_url_passwords(settings.database_url))


async def shutdown(ctx: dict[str, Any]) -> None:
    engine = ctx.get("engine")
    if engine is not None:
        await engine.dispose()
    # The telemetry providers flush at process exit (the SDK registers that itself).


def _serve_metrics(port: int) -> None:
    """The worker's own /metrics (it is another process than the API's workers)."""
    if not port:
        return
    try:
        start_metrics_server(port)
    except OSError as error:  # e.g. a second worker on the same machine
        logger.warning("worker metrics not served on port %d: %s", port, error)


# arq's poll loop has no error handling of its own: a single failed Redis call ends the
# worker process. Each call retries instead, with a backoff up to 1 s between tries, for
# about a minute: a Redis restart or failover passes unnoticed but for the delay, and a
# job that finishes meanwhile records its result once Redis is back. A longer outage still
# ends the process, for its supervisor to restart.
REDIS_RETRIES = 60
REDIS_RETRY_BACKOFF = ExponentialBackoff(cap=1.0, base=0.05)


def redis_settings(redis_url: str) -> RedisSettings:
    settings = RedisSettings.from_dsn(redis_url)
    settings.retry = Retry(REDIS_RETRY_BACKOFF, REDIS_RETRIES)
    # OSError too: a refused connection reaches the retry as one before redis-py wraps it.
    settings.retry_on_error = [RedisConnectionError, RedisTimeoutError, OSError]
    return settings


def worker_options(settings: Settings) -> dict[str, Any]:
    """Everything WorkerSettings holds, for tests that start a `Worker` in-process."""
    if not settings.redis_url:
        raise ConfigError("REDIS_URL: the worker needs Redis (without it the API runs jobs itself)")
    return {
        "functions": [
            func(
                export_todos_for_arq,
                name=JOB_NAME,
                max_tries=settings.export_max_tries,
                timeout=settings.export_job_timeout,
            )
        ],
        "cron_jobs": [
            # Not longer than the export's timeout: arq holds a dead worker's job for the
            # longest timeout of all functions (+10 s) before another worker may take it.
            cron(
                purge_exports,
                minute=set(range(0, 60, 15)),
                run_at_startup=True,
                timeout=settings.export_job_timeout,
            )
        ],
        "on_startup": startup,
        "on_shutdown": shutdown,
        "redis_settings": redis_settings(settings.redis_url),
        "queue_name": QUEUE_NAME,
        "job_serializer": serialize_job,
        "job_deserializer": deserialize_job,
        "health_check_interval": settings.worker_health_check_interval,
        "job_completion_wait": settings.worker_job_completion_wait,
        "max_tries": settings.export_max_tries,
        "job_timeout": settings.export_job_timeout,
        "keep_result": 3600,
    }
