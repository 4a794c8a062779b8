"""The export job when no Redis is configured: run in the API process, same code, same retries."""

from __future__ import annotations

import asyncio
import logging

from quart import Quart

from service.config import Settings
from service.db import Database
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


async def export_todos_in_process(
    app: Quart, export_id: str, trace_context: dict[str, str] | None = None
) -> None:
    settings: Settings = app.extensions["settings"]
    database: Database = app.extensions["database"]
    for try_number in range(1, settings.export_max_tries + 1):
        try:
            with consumer_span(JOB_TYPE, export_id, try_number, trace_context):
                count_job(JOB_TYPE, "started")
                await run_export(
                    database.sessionmaker, export_id, batch_size=settings.export_batch_size
                )
            count_job(JOB_TYPE, "succeeded")
            return
        except TransientExportError as error:
            logger.warning("export %s: try %d failed (%s)", export_id, try_number, error)
            if try_number < settings.export_max_tries:
                await asyncio.sleep(retry_delay_seconds(try_number))
        except Exception:
            logger.exception("export %s failed", export_id)
            count_job(JOB_TYPE, "failed")
            await mark_failed(database.sessionmaker, export_id, "the export failed")
            return
    count_job(JOB_TYPE, "failed")
    try:
        await mark_failed(database.sessionmaker, export_id, "the database stayed unreachable")
    except TransientExportError:
        logger.error("export %s: could not record its failure", export_id)
