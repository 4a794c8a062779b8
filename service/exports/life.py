"""An export's life: start it, then (in the job) claim, write, finish or fail it.

Safe to run more than once for the same export (arq delivers at least once):
each run claims the export with a fresh `run_token`, writes its chunks under that
token, and only the run whose token is still current may mark it complete. Rows
are read by keyset pagination and written a chunk per batch, so memory stays flat
however many todos there are.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.errors import DATABASE_UNAVAILABLE
from service.exports import queries
from service.exports.encoding import encode_batch
from service.exports.models import Export
from service.queue import enqueue
from service.ratelimit import TooManyRequests

logger = logging.getLogger(__name__)
JOB_NAME = "export_todos"


# A pending export usually ends within seconds (100,000 todos: about 3 s).
PENDING_RETRY_AFTER_SECONDS = 5


class TransientExportError(Exception):
    """The database was unreachable: worth another try later."""


class TooManyExports(TooManyRequests):
    message = "too many exports pending for this client, wait for one to finish"


async def start_export(
    session: AsyncSession, export_format: str, *, client_key: str, settings: Settings
) -> Export:
    """Record the export, then queue its job; nothing is left behind when Redis is down.

    A client (`client_key`, "user:<id>" or "ip:<address>") may have EXPORT_MAX_PENDING
    queued or running exports: beyond, TooManyExports (429). The same request again
    while one of its kind is pending gets that export back, not a second copy.

    Two transactions on purpose: the row must be committed before the job is queued
    (a worker may start it at once, and must find it), and when queueing fails the
    committed row is taken back in a second one rather than left `queued` for ever.
    """
    await queries.lock_client_exports(session, client_key)
    # Insert first, then look: on SQLite the insert takes the write lock, so concurrent
    # requests of one client count one after another there too (PostgreSQL: the lock above).
    export = await queries.create_export(session, export_format, client_key=client_key)
    pending = await queries.list_pending_exports(
        session, client_key, newer_than_seconds=stale_after_seconds(settings)
    )
    earlier = next((p for p in pending if p.id != export.id and p.format == export_format), None)
    if earlier is not None or len(pending) > settings.export_max_pending:
        await queries.delete_export(session, export)
        await session.commit()  # also ends the advisory lock
        if earlier is None:
            raise TooManyExports(PENDING_RETRY_AFTER_SECONDS)
        return earlier
    await session.commit()
    try:
        await enqueue(JOB_NAME, job_id=export.id, export_id=export.id)
    except Exception:
        await queries.delete_export(session, export)
        await session.commit()
        raise
    return export


def stale_after_seconds(settings: Settings) -> float:
    """An export unfinished this long after its creation has lost its job for good."""
    return settings.export_job_timeout * settings.export_max_tries + 600


async def _write_chunks(
    session: AsyncSession, export_id: str, run_token: str, export_format: str, batch_size: int
) -> tuple[int, int]:
    """Write the file a batch at a time, a commit per chunk; return (rows, bytes)."""
    rows_written = size = seq = 0
    last_id = 0
    while True:
        batch = await queries.select_todo_batch(session, last_id, batch_size)
        last = len(batch) < batch_size
        # In a thread: encoding a batch is the job's longest stretch of pure Python, and
        # in-process (no Redis) it would hold the API's event loop meanwhile.
        data = await asyncio.to_thread(
            encode_batch, batch, export_format, first=seq == 0, last=last
        )
        await queries.insert_chunk(session, export_id, run_token, seq, data)
        rows_written += len(batch)
        # In the chunk's commit: the progress shown is never ahead of the file.
        await queries.record_progress(session, export_id, run_token, rows_written)
        await session.commit()
        size += len(data)
        seq += 1
        if last:
            return rows_written, size
        last_id = batch[-1].id


async def run_export(
    sessionmaker: async_sessionmaker[AsyncSession], export_id: str, *, batch_size: int
) -> str:
    """Write the export's file; return the export's status afterwards."""
    run_token = uuid.uuid4().hex
    try:
        async with sessionmaker() as session:
            export_format = await queries.claim_export(session, export_id, run_token)
            await session.commit()
            if export_format is None:
                return await queries.get_export_status(session, export_id) or "missing"
            rows, size = await _write_chunks(
                session, export_id, run_token, export_format, batch_size
            )
            if not await queries.finish_export(
                session, export_id, run_token, rows=rows, size_bytes=size
            ):  # another run took over meanwhile: its file wins
                await queries.delete_run_chunks(session, export_id, run_token)
            await session.commit()
            logger.info("export %s: %d rows, %d bytes", export_id, rows, size)
            return "complete"
    except DATABASE_UNAVAILABLE as error:
        raise TransientExportError(type(error).__name__) from error


async def mark_failed(
    sessionmaker: async_sessionmaker[AsyncSession], export_id: str, reason: str
) -> None:
    """`failed` with a reason a user can read (shown by GET /exports/<id> and the page)."""
    async with sessionmaker() as session:
        await queries.fail_export(session, export_id, reason)
        await session.commit()


def retry_delay_seconds(try_number: int) -> float:
    """Backoff before the next try: 2, 4, 8 ... seconds, at most a minute."""
    return float(min(2**try_number, 60))
