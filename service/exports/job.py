"""The export job: the one function the arq worker and the in-process runner both call.

`ctx` carries `settings`, `sessionmaker`, `job_id` and `job_try` (arq's names; the
in-process runner in `service.queue` fills the same keys). One retry policy: an
unreachable database raises `RetryLater` until the last try, which marks the export
failed; any other error, and running out of time, fail it at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from service.exports.life import (
    JOB_NAME,
    TransientExportError,
    mark_failed,
    retry_delay_seconds,
    run_export,
)
from service.metrics import count_job
from service.queue import RetryLater
from service.telemetry import consumer_span

logger = logging.getLogger(__name__)
# On the API's event loop (no Redis), smaller batches: each step holds the loop briefly,
# so requests keep their latency (bench/inprocess_exports.py: 8 exports of 50,000 todos,
# GET p95 about 2x idle at 200 rows, 3.5x at 1,000). The worker keeps EXPORT_BATCH_SIZE.
IN_PROCESS_BATCH_SIZE = 200


def time_allowed(job_timeout: float) -> float:
    """Our own deadline, ahead of arq's `job_timeout` by enough to record the failure.

    arq ends an overdue job with CancelledError, which no `except Exception` sees: the
    export would stay `in_progress`. Our TimeoutError comes first and is handled.
    """
    return job_timeout - min(10.0, job_timeout / 4)


async def export_todos(
    ctx: dict[str, Any], export_id: str, trace_context: dict[str, str] | None = None
) -> str:
    """Write export `export_id`; arq may deliver it more than once: `run_export` is idempotent."""
    with consumer_span(JOB_NAME, ctx["job_id"], ctx["job_try"], trace_context):
        count_job(JOB_NAME, "started")
        try:
            status = await _export(ctx, export_id)
        except RetryLater:
            raise  # not an outcome yet: it runs again
        except BaseException:  # a shutdown's cancellation too: counted, picked up again
            count_job(JOB_NAME, "failed")
            raise
        count_job(JOB_NAME, "failed" if status == "failed" else "succeeded")
        return status


async def _export(ctx: dict[str, Any], export_id: str) -> str:
    settings = ctx["settings"]
    sessionmaker = ctx["sessionmaker"]
    job_try: int = ctx["job_try"]
    batch_size = settings.export_batch_size
    if ctx.get("in_process"):
        batch_size = min(batch_size, IN_PROCESS_BATCH_SIZE)
    try:
        async with asyncio.timeout(time_allowed(settings.export_job_timeout)):
            return await run_export(sessionmaker, export_id, batch_size=batch_size)
    except TimeoutError:
        # Not retried: an export that ran out of time will most likely do so again.
        logger.error("export %s: out of time after %d s", export_id, settings.export_job_timeout)
        reason = f"the export took longer than {settings.export_job_timeout} s"
        await mark_failed(sessionmaker, export_id, reason)
        return "failed"
    except TransientExportError as error:
        if job_try >= settings.export_max_tries:
            logger.error("export %s: giving up after %d tries", export_id, job_try)
            try:
                await mark_failed(sessionmaker, export_id, "the database stayed unreachable")
            except Exception:
                logger.error("export %s: could not record its failure", export_id)
            raise
        delay = retry_delay_seconds(job_try)
        logger.warning(
            "export %s: try %d failed (%s), again in %.0f s", export_id, job_try, error, delay
        )
        raise RetryLater(delay) from error
    except Exception:
        logger.exception("export %s failed", export_id)
        await mark_failed(sessionmaker, export_id, "the export failed")
        raise


ABANDONED_REASON = "the server stopped before the export finished; start it again"


async def abandon_export(
    ctx: dict[str, Any], export_id: str, trace_context: dict[str, str] | None = None
) -> None:
    """In-process only: the API is stopping and cancels this export (queued or running).
    No worker will pick it up, so it fails with a reason instead of staying pending (the
    page would poll it for ever, and it would hold one of its client's slots)."""
    await mark_failed(ctx["sessionmaker"], export_id, ABANDONED_REASON)
