"""The export job: arq's wrapper around `service.exports.run.run_export`."""

from __future__ import annotations

import logging
from typing import Any

from arq import Retry

from service.exports.run import (
    TransientExportError,
    mark_failed,
    retry_delay_seconds,
    run_export,
)
from service.metrics import count_job
from service.telemetry import consumer_span

logger = logging.getLogger(__name__)
JOB_TYPE = "export_todos"


async def export_todos(
    ctx: dict[str, Any], export_id: str, trace_context: dict[str, str] | None = None
) -> str:
    """Write export `export_id`. arq may deliver it more than once: `run_export` is idempotent."""
    with consumer_span(JOB_TYPE, ctx["job_id"], ctx["job_try"], trace_context):
        count_job(JOB_TYPE, "started")
        try:
            status = await _export(ctx, export_id)
        except Retry:
            raise  # not an outcome yet: arq runs it again
        except BaseException:
            count_job(JOB_TYPE, "failed")
            raise
        count_job(JOB_TYPE, "succeeded")
        return status


async def _export(ctx: dict[str, Any], export_id: str) -> str:
    settings = ctx["settings"]
    sessionmaker = ctx["sessionmaker"]
    try:
        return await run_export(sessionmaker, export_id, batch_size=settings.export_batch_size)
    except TransientExportError as error:
        # arq retries only on Retry; anything else would fail the job for good.
        if ctx["job_try"] >= settings.export_max_tries:
            logger.error("export %s: giving up after %d tries", export_id, ctx["job_try"])
            try:
                await mark_failed(sessionmaker, export_id, "the database stayed unreachable")
            except Exception:
                logger.error("export %s: could not record its failure", export_id)
            raise
        delay = retry_delay_seconds(ctx["job_try"])
        logger.warning(
            "export %s: try %d failed (%s), again in %.0f s",
            export_id,
            ctx["job_try"],
            error,
            delay,
        )
        raise Retry(defer=delay) from error
    except Exception:
        logger.exception("export %s failed", export_id)
        await mark_failed(sessionmaker, export_id, "the export failed")
        raise
