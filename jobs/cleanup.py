"""Cron: delete old exports, fail the ones stuck past every retry."""

from __future__ import annotations

import logging
from typing import Any

from service.exports.life import stale_after_seconds
from service.exports.queries import clean_up_exports

logger = logging.getLogger(__name__)


async def purge_exports(ctx: dict[str, Any]) -> dict[str, int]:
    settings = ctx["settings"]
    # An export still unfinished after every try and its timeout has lost its worker for good.
    stale_after = stale_after_seconds(settings)
    async with ctx["sessionmaker"]() as session:
        deleted, failed = await clean_up_exports(
            session,
            retention_hours=settings.export_retention_hours,
            stale_after_seconds=stale_after,
        )
        await session.commit()
    if deleted or failed:
        logger.info("exports clean-up: %d deleted, %d marked failed", deleted, failed)
    return {"deleted": deleted, "failed": failed}
