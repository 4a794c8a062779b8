from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.exports.models import Export, ExportChunk


async def create_export(session: AsyncSession, export_format: str) -> Export:
    export = Export(id=str(uuid.uuid4()), format=export_format, status="queued")
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


async def stream_export_file(
    sessionmaker: async_sessionmaker[AsyncSession], export_id: str, run_token: str
) -> AsyncIterator[bytes]:
    """The file, a chunk at a time, each read in its own short query."""
    seq = 0
    while True:
        async with sessionmaker() as session:
            data = await session.scalar(
                select(ExportChunk.data).where(
                    ExportChunk.export_id == export_id,
                    ExportChunk.run_token == run_token,
                    ExportChunk.seq == seq,
                )
            )
        if data is None:
            return
        yield data
        seq += 1
