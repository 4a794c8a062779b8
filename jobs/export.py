"""arq's side of the export job: the service's job, its RetryLater raised as arq's Retry."""

from __future__ import annotations

import functools
from typing import Any

from arq import Retry

from service.exports.job import export_todos
from service.queue import Job, RetryLater


def arq_job(function: Job) -> Job:
    """The same job for arq, which retries only on its own `Retry`."""

    @functools.wraps(function)
    async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return await function(ctx, *args, **kwargs)
        except RetryLater as retry:
            raise Retry(defer=retry.defer) from retry

    return run


export_todos_for_arq = arq_job(export_todos)
