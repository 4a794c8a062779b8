"""Background jobs: enqueued on arq over Redis, or run in this process when no Redis is set.

Jobs are named, never imported from `jobs/`, so `service/` does not depend on the
worker; the app factory registers each job function by name (`register_job`). In-process
mode runs that same function on the API's event loop, with the same context keys and the
same retry policy (`RetryLater`), so the one-command run still exports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from arq.connections import ArqRedis
from quart import Quart, current_app
from redis.asyncio import ConnectionPool
from redis.exceptions import RedisError

from service.config import Settings
from service.errors import ServiceUnavailable
from service.metrics import count_job
from service.telemetry import producer_span

logger = logging.getLogger(__name__)

QUEUE_NAME = "arq:queue"
HEALTH_CHECK_KEY = QUEUE_NAME + ":health-check"  # refreshed by every live worker


def serialize_job(payload: dict[str, Any]) -> bytes:
    # JSON, not arq's default pickle: a job carries only ids and plain values.
    return json.dumps(payload).encode()


def deserialize_job(data: bytes) -> dict[str, Any]:
    return json.loads(data)


class QueueUnavailable(ServiceUnavailable):
    message = "the job queue (Redis) is unavailable, try again later"


Job = Callable[..., Awaitable[Any]]


class RetryLater(Exception):
    """Raised by a job: run me again in `defer` seconds (the worker maps it to arq's Retry)."""

    def __init__(self, defer: float) -> None:
        super().__init__(f"retry in {defer} s")
        self.defer = defer


@dataclass(frozen=True)
class RegisteredJob:
    function: Job
    max_tries: int
    in_process_concurrency: int
    # In-process runs only: called (same ctx and kwargs) when the server stops before the
    # run could finish. No worker will pick it up again, as one would with Redis.
    abandoned: Job | None


# Seconds a stopping server gives the `abandoned` hooks of the runs it cancels.
ABANDON_SECONDS = 5.0


def register_job(
    app: Quart,
    name: str,
    function: Job,
    *,
    max_tries: int,
    in_process_concurrency: int = 1,
    abandoned: Job | None = None,
) -> None:
    """Make `function(ctx, **kwargs)` runnable in-process under `name` (without Redis).

    At most `in_process_concurrency` of its runs at a time: they share the API's event
    loop (and database pool) with the requests; the others wait their turn. A run the
    server has to cancel when it stops gets `abandoned(ctx, **kwargs)`, e.g. to record it.
    """
    app.extensions.setdefault("jobs", {})[name] = RegisteredJob(
        function, max_tries, in_process_concurrency, abandoned
    )


async def _run_in_process(app: Quart, name: str, job_id: str, **kwargs: Any) -> None:
    """Run a registered job as arq would: a ctx per try, `RetryLater` waits and tries again."""
    job: RegisteredJob = app.extensions["jobs"][name]
    slots: asyncio.Semaphore = app.extensions["job_slots"][name]
    ctx: dict[str, Any] = {}
    try:
        for job_try in range(1, job.max_tries + 1):
            ctx = {
                "settings": app.extensions["settings"],
                "sessionmaker": app.extensions["database"].sessionmaker,
                "job_id": job_id,
                "job_try": job_try,
                "in_process": True,  # on the API's event loop: a job may go easier on it
            }
            try:
                async with slots:  # not held while waiting to retry: others run meanwhile
                    await job.function(ctx, **kwargs)
                return
            except RetryLater as retry:
                if job_try < job.max_tries:
                    await asyncio.sleep(retry.defer)
            except Exception:
                logger.warning("job %s (%s) failed on try %d", job_id, name, job_try)
                return
        logger.error("job %s (%s) failed after %d tries", job_id, name, job.max_tries)
    except asyncio.CancelledError:  # the server is stopping (see init_queue's _close)
        if job.abandoned is not None:
            logger.warning("job %s (%s) abandoned: the server is stopping", job_id, name)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(ABANDON_SECONDS):
                    await job.abandoned(ctx, **kwargs)  # set before the first await
        raise


def init_queue(app: Quart, settings: Settings) -> None:
    @app.before_serving
    async def _open() -> None:
        app.extensions["background_tasks"] = set()
        # Made here, in the serving loop, one per registered job.
        app.extensions["job_slots"] = {
            name: asyncio.Semaphore(job.in_process_concurrency)
            for name, job in app.extensions.get("jobs", {}).items()
        }
        if settings.redis_url:
            # No ping here: the API starts, and serves its read routes, while Redis is down.
            pool = ConnectionPool.from_url(
                settings.redis_url,
                socket_connect_timeout=2,
                socket_timeout=2,
                health_check_interval=30,
            )
            app.extensions["redis"] = ArqRedis(
                connection_pool=pool,
                job_serializer=serialize_job,
                job_deserializer=deserialize_job,
                default_queue_name=QUEUE_NAME,
            )

    @app.after_serving
    async def _close() -> None:
        tasks: set[asyncio.Task[Any]] = app.extensions.pop("background_tasks", set())
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=settings.graceful_timeout)
            for task in pending:
                task.cancel()
            if pending:  # let their `abandoned` hooks record it while the pools still work
                await asyncio.wait(pending, timeout=ABANDON_SECONDS + 1)
        redis: ArqRedis | None = app.extensions.pop("redis", None)
        if redis is not None:
            await redis.aclose(close_connection_pool=True)


def get_redis() -> ArqRedis | None:
    return current_app.extensions.get("redis")


async def ping_redis(client: ArqRedis, within_seconds: float) -> bool:
    try:
        async with asyncio.timeout(within_seconds):
            return bool(await client.ping())
    except Exception:
        return False


async def enqueue(job_name: str, *, job_id: str, **kwargs: Any) -> None:
    """Queue `job_name` under the unique `job_id`; QueueUnavailable (503) when Redis is down.

    The job receives `trace_context`, the W3C context of a PRODUCER span, so that its
    CONSUMER span continues this request's trace.
    """
    with producer_span(job_name, job_id) as trace_context:
        redis = get_redis()
        if redis is None:
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            task = asyncio.create_task(
                _run_in_process(app, job_name, job_id, trace_context=trace_context, **kwargs),
                name=f"{job_name}:{job_id}",
            )
            tasks: set[asyncio.Task[Any]] = app.extensions["background_tasks"]
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        else:
            try:
                async with asyncio.timeout(3):
                    job = await redis.enqueue_job(
                        job_name, _job_id=job_id, trace_context=trace_context, **kwargs
                    )
            except (RedisError, OSError, TimeoutError) as error:
                logger.warning("could not enqueue %s: %s", job_name, type(error).__name__)
                raise QueueUnavailable() from error
            if job is None:  # arq: that id is queued, running or finished already
                logger.info("job %s already enqueued", job_id)
                return
    count_job(job_name, "enqueued")


async def queue_state(client: ArqRedis, within_seconds: float) -> tuple[bool, int]:
    """(a worker checked in recently, jobs waiting in the queue)."""
    async with asyncio.timeout(within_seconds):
        worker_alive = bool(await client.exists(HEALTH_CHECK_KEY))
        depth = int(await client.zcard(QUEUE_NAME))
    return worker_alive, depth
