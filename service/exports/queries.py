"""All of the exports' SQL: plain statements that never commit."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import utc_now
from service.exports.models import Export, ExportChunk
from service.todos.models import Todo


async def create_export(
    session: AsyncSession, export_format: str, *, client_key: str | None = None
) -> Export:
    export = Export(
        id=str(uuid.uuid4()), format=export_format, status="queued", client_key=client_key
    )
    session.add(export)
    await session.flush()
    return export


async def get_export(session: AsyncSession, export_id: str) -> Export | None:
    try:
        uuid.UUID(export_id)
    except ValueError:
        return None
    return await session.get(Export, export_id)


async def delete_export(session: AsyncSession, export: Export) -> None:
    await session.delete(export)
    await session.flush()


# The export's life, statement by statement (`service.exports.life` commits).


async def claim_export(session: AsyncSession, export_id: str, run_token: str) -> str | None:
    """Mark the export in progress for this run; its format, or None when complete or unknown."""
    claimed = await session.execute(
        update(Export)
        .where(Export.id == export_id, Export.status != "complete")
        .values(
            status="in_progress",
            run_token=run_token,
            attempts=Export.attempts + 1,
            started_at=utc_now(),
            error=None,
            # Progress starts afresh; the total is what there is now, counted in the claim's
            # transaction (todos added meanwhile are exported too: `finish_export` corrects it).
            rows_written=0,
            rows_total=select(func.count()).select_from(Todo).scalar_subquery(),
        )
    )
    if not claimed.rowcount:
        return None
    # Chunks of an earlier, interrupted run are never shown: drop them.
    await session.execute(
        delete(ExportChunk).where(
            ExportChunk.export_id == export_id, ExportChunk.run_token != run_token
        )
    )
    return await session.scalar(select(Export.format).where(Export.id == export_id))


async def get_export_status(session: AsyncSession, export_id: str) -> str | None:
    return await session.scalar(select(Export.status).where(Export.id == export_id))


async def select_todo_batch(session: AsyncSession, after_id: int, limit: int) -> Sequence[Row[Any]]:
    """The next `limit` todos after `after_id` (keyset pagination: flat memory, no OFFSET)."""
    result = await session.execute(
        select(Todo.id, Todo.task, Todo.done, Todo.created_at, Todo.updated_at)
        .where(Todo.id > after_id)
        .order_by(Todo.id)
        .limit(limit)
    )
    return result.all()


async def insert_chunk(
    session: AsyncSession, export_id: str, run_token: str, seq: int, data: bytes
) -> None:
    await session.execute(
        insert(ExportChunk).values(export_id=export_id, run_token=run_token, seq=seq, data=data)
    )


async def record_progress(
    session: AsyncSession, export_id: str, run_token: str, rows_written: int
) -> None:
    """Rows written so far, unless another run took over (a superseded run shows nothing)."""
    await session.execute(
        update(Export)
        .where(Export.id == export_id, Export.run_token == run_token)
        .values(rows_written=rows_written)
    )


async def finish_export(
    session: AsyncSession, export_id: str, run_token: str, *, rows: int, size_bytes: int
) -> bool:
    """Mark complete if this run still holds the export; False when another run took over."""
    finished = await session.execute(
        update(Export)
        .where(Export.id == export_id, Export.run_token == run_token)
        .values(
            status="complete",
            rows=rows,
            rows_written=rows,
            rows_total=rows,  # what the file holds, not the count at claim time
            size_bytes=size_bytes,
            finished_at=utc_now(),
        )
    )
    return bool(finished.rowcount)


async def delete_run_chunks(session: AsyncSession, export_id: str, run_token: str) -> None:
    await session.execute(
        delete(ExportChunk).where(
            ExportChunk.export_id == export_id, ExportChunk.run_token == run_token
        )
    )


async def fail_export(session: AsyncSession, export_id: str, reason: str) -> None:
    await session.execute(
        update(Export)
        .where(Export.id == export_id, Export.status != "complete")
        .values(status="failed", error=reason, finished_at=utc_now())
    )


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
    return deleted.rowcount or 0, failed.rowcount or 0


async def list_chunk_sizes(
    session: AsyncSession, export_id: str, run_token: str
) -> list[tuple[int, int]]:
    """(seq, bytes) of each chunk of the file, in order: where a byte range starts.

    PostgreSQL's length(bytea) (the same function as octet_length) reads the size from the
    value's header, without decompressing or fetching a TOASTed chunk; SQLite has length()
    for blobs too (octet_length only from 3.43).
    """
    rows = await session.execute(
        select(ExportChunk.seq, func.length(ExportChunk.data))
        .where(ExportChunk.export_id == export_id, ExportChunk.run_token == run_token)
        .order_by(ExportChunk.seq)
    )
    return [(seq, size) for seq, size in rows.tuples()]


async def get_chunk(
    session: AsyncSession, export_id: str, run_token: str, seq: int
) -> bytes | None:
    return await session.scalar(
        select(ExportChunk.data).where(
            ExportChunk.export_id == export_id,
            ExportChunk.run_token == run_token,
            ExportChunk.seq == seq,
        )
    )


# Limits: pending exports per client (`service.exports.life.start_export`).

PENDING_STATUSES = ("queued", "in_progress")


async def lock_client_exports(session: AsyncSession, client_key: str) -> None:
    """Serialise the count-then-insert of one client's exports until this transaction ends.

    PostgreSQL: a transaction-level advisory lock on the key (released at commit or
    rollback). SQLite needs none: its writers take turns, and the caller inserts first.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    digest = hashlib.sha256(b"exports:" + client_key.encode()).digest()
    await session.execute(
        select(func.pg_advisory_xact_lock(int.from_bytes(digest[:8], "big", signed=True)))
    )


async def list_pending_exports(
    session: AsyncSession, client_key: str, *, newer_than_seconds: float
) -> Sequence[Export]:
    """The client's queued or running exports, oldest first.

    Only those younger than the stale-export window count: an export whose job was lost
    (an API restarted in in-process mode) must not hold the client's slot for ever.
    """
    since = datetime.now(UTC) - timedelta(seconds=newer_than_seconds)
    result = await session.scalars(
        select(Export)
        .where(
            Export.client_key == client_key,
            Export.status.in_(PENDING_STATUSES),
            Export.created_at > since,
        )
        .order_by(Export.created_at, Export.id)
    )
    return result.all()
