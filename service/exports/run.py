"""Writing an export: the one piece of code the arq job and the in-process runner share.

Safe to run more than once for the same export (arq delivers at least once):
each run claims the export with a fresh `run_token`, writes its chunks under that
token, and only the run whose token is still current may mark it complete. Rows
are read by keyset pagination and written a chunk per batch, so memory stays flat
however many todos there are.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.db import utc_now
from service.errors import DATABASE_UNAVAILABLE
from service.exports.models import Export, ExportChunk
from service.todos.models import Todo

logger = logging.getLogger(__name__)

EXPORT_COLUMNS = ("id", "task", "done", "created_at", "updated_at")
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


class TransientExportError(Exception):
    """The database was unreachable: worth another try later."""


def _iso(value: datetime) -> str:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def _plain(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "task": row.task,
        "done": bool(row.done),
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
    }


def encode_batch(rows: Sequence[Row[Any]], export_format: str, *, first: bool, last: bool) -> bytes:
    """One chunk of the file: a CSV header or "[" first, "]" last for JSON."""
    if export_format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        if first:
            writer.writerow(EXPORT_COLUMNS)
        for row in rows:
            record = _plain(row)
            record["done"] = "true" if record["done"] else "false"
            writer.writerow([record[column] for column in EXPORT_COLUMNS])
        return buffer.getvalue().encode()
    body = ",".join(json.dumps(_plain(row), ensure_ascii=False) for row in rows)
    prefix = "[" if first else ("," if body else "")
    return (prefix + body + ("]" if last else "")).encode()


async def _claim(session: AsyncSession, export_id: str, run_token: str) -> str | None:
    """Mark the export in progress for this run; None when it is complete or unknown."""
    claimed = await session.execute(
        update(Export)
        .where(Export.id == export_id, Export.status != "complete")
        .values(
            status="in_progress",
            run_token=run_token,
            attempts=Export.attempts + 1,
            started_at=utc_now(),
            error=None,
        )
    )
    if not claimed.rowcount:
        await session.commit()
        return None
    # Chunks of an earlier, interrupted run are never shown: drop them.
    await session.execute(
        delete(ExportChunk).where(
            ExportChunk.export_id == export_id, ExportChunk.run_token != run_token
        )
    )
    export_format = await session.scalar(select(Export.format).where(Export.id == export_id))
    await session.commit()
    return export_format


async def _write_chunks(
    session: AsyncSession, export_id: str, run_token: str, export_format: str, batch_size: int
) -> tuple[int, int]:
    rows_written = size = seq = 0
    last_id = 0
    while True:
        batch = (
            await session.execute(
                select(Todo.id, Todo.task, Todo.done, Todo.created_at, Todo.updated_at)
                .where(Todo.id > last_id)
                .order_by(Todo.id)
                .limit(batch_size)
            )
        ).all()
        last = len(batch) < batch_size
        data = encode_batch(batch, export_format, first=seq == 0, last=last)
        await session.execute(
            insert(ExportChunk).values(export_id=export_id, run_token=run_token, seq=seq, data=data)
        )
        await session.commit()
        rows_written += len(batch)
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
            export_format = await _claim(session, export_id, run_token)
            if export_format is None:
                status = await session.scalar(select(Export.status).where(Export.id == export_id))
                return status or "missing"
            rows, size = await _write_chunks(
                session, export_id, run_token, export_format, batch_size
            )
            finished = await session.execute(
                update(Export)
                .where(Export.id == export_id, Export.run_token == run_token)
                .values(status="complete", rows=rows, size_bytes=size, finished_at=utc_now())
            )
            if not finished.rowcount:  # another run took over meanwhile: its file wins
                await session.execute(
                    delete(ExportChunk).where(
                        ExportChunk.export_id == export_id, ExportChunk.run_token == run_token
                    )
                )
            await session.commit()
            logger.info("export %s: %d rows, %d bytes", export_id, rows, size)
            return "complete"
    except DATABASE_UNAVAILABLE as error:
        raise TransientExportError(type(error).__name__) from error


async def mark_failed(
    sessionmaker: async_sessionmaker[AsyncSession], export_id: str, reason: str
) -> None:
    async with sessionmaker() as session:
        await session.execute(
            update(Export)
            .where(Export.id == export_id, Export.status != "complete")
            .values(status="failed", error=reason, finished_at=utc_now())
        )
        await session.commit()


async def clean_up_exports(
    session: AsyncSession, *, retention_hours: float, stale_after_seconds: float
) -> tuple[int, int]:
    """Delete exports older than the retention; fail those stuck past every retry.

    Returns (deleted, failed).
    """
    now = datetime.now(UTC)
    deleted = await session.execute(
        delete(Export).where(Export.created_at < now - timedelta(hours=retention_hours))
    )
    failed = await session.execute(
        update(Export)
        .where(
            or_(Export.status == "queued", Export.status == "in_progress"),
            Export.created_at < now - timedelta(seconds=stale_after_seconds),
        )
        .values(status="failed", error="the export did not finish in time", finished_at=now)
    )
    await session.commit()
    return deleted.rowcount or 0, failed.rowcount or 0


def retry_delay_seconds(try_number: int) -> float:
    """Backoff before the next try: 2, 4, 8 ... seconds, at most a minute."""
    return float(min(2**try_number, 60))
