"""Serving an export's file: whole or a byte range, for as long as the client reads.

Quart does the HTTP of ranges (`Response.make_conditional`: `Range`, `If-Range`, 206,
`Content-Range`, 304 on `If-None-Match`); this module gives it a body that can start at
any byte of the chunked file, and reads one chunk at a time in its own short query, so a
slow download holds no database connection between chunks.

A download has no total time limit (Quart's RESPONSE_TIMEOUT, 60 s, cut slow ones
halfway): instead each piece of the body may wait at most DOWNLOAD_IDLE_TIMEOUT for the
client to take it (service/middleware.py enforces it on the ASGI `send`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from types import TracebackType

from quart import Response, current_app, request
from quart.wrappers.response import ResponseBody
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from werkzeug.exceptions import RequestedRangeNotSatisfiable

from service.db import get_database
from service.errors import error_response
from service.exports import queries
from service.exports.models import Export
from service.middleware import SEND_IDLE_TIMEOUT_KEY

logger = logging.getLogger(__name__)

# A chunk (a batch of rows, ~100 KB) goes out in pieces of at most this, so that a slow
# client's time to take one piece, not a whole chunk, counts against the idle timeout.
PIECE_BYTES = 64 * 1024


class ExportFileChanged(Exception):
    """The file's chunks ended before its size: it was deleted (retention) mid-download."""


class ExportFileBody(ResponseBody):
    """The bytes [begin, end) of an export's file; Quart sets the range through
    `make_conditional` (the protocol its own file bodies follow)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        export: Export,
        size: int,
        *,
        head_only: bool,
    ) -> None:
        assert export.run_token is not None
        # Read here: the body is sent after Quart has closed the request context.
        self.head_only = head_only
        self.sessionmaker = sessionmaker
        self.export_id = export.id
        self.run_token = export.run_token
        self.size = size
        self.begin, self.end = 0, size
        self.sent = 0  # bytes the client has taken (the send of the previous piece returned)
        self._chunks: AsyncIterator[bytes] | None = None

    async def make_conditional(self, begin: int, end: int | None) -> int:
        # werkzeug gives a suffix range (`bytes=-500`) as (-500, None); Quart would use
        # the negative start as it is.
        if begin < 0:
            begin = max(self.size + begin, 0)
        end = self.size if end is None else min(end, self.size)
        if begin >= end:
            raise RequestedRangeNotSatisfiable(length=self.size)
        self.begin, self.end = begin, end
        return self.size

    async def __aenter__(self) -> ExportFileBody:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._chunks is not None:
            await self._chunks.aclose()  # type: ignore[attr-defined]
        if exc_type is None:
            return
        if exc_type is TimeoutError:
            reason = "the client took nothing for DOWNLOAD_IDLE_TIMEOUT"
        elif issubclass(exc_type, asyncio.CancelledError):
            reason = "the client went away or the server is shutting down"
        else:
            reason = f"{exc_type.__name__}: {exc_value}"
        logger.warning(
            "download of export %s cut after %d of %d bytes: %s",
            self.export_id,
            self.sent,
            self.end - self.begin,
            reason,
            extra={"export_id": self.export_id, "bytes_sent": self.sent},
        )

    def __aiter__(self) -> AsyncIterator[bytes]:
        self._chunks = self._read()
        return self._chunks

    async def _read(self) -> AsyncIterator[bytes]:
        if self.head_only:  # hypercorn drops the body of an answer to HEAD: don't read it
            return
        seq, skip = 0, self.begin
        if skip:
            async with self.sessionmaker() as session:
                sizes = await queries.list_chunk_sizes(session, self.export_id, self.run_token)
            for seq, chunk_size in sizes:  # noqa: B007 (seq is the chunk to start from)
                if skip < chunk_size:
                    break
                skip -= chunk_size
        remaining = self.end - self.begin
        while remaining > 0:
            async with self.sessionmaker() as session:
                data = await queries.get_chunk(session, self.export_id, self.run_token, seq)
            if data is None:
                raise ExportFileChanged(f"chunk {seq} of export {self.export_id} is gone")
            wanted = memoryview(data)[skip : skip + remaining]
            skip = 0
            seq += 1
            for start in range(0, len(wanted), PIECE_BYTES):
                piece = bytes(wanted[start : start + PIECE_BYTES])
                yield piece
                self.sent += len(piece)
                remaining -= len(piece)


async def file_response(export: Export, content_type: str) -> Response:
    """200 with the whole file, or 206 with the one byte range asked for (416 when it lies
    beyond the end). Several ranges get the whole file, as RFC 9110 allows."""
    assert export.run_token is not None
    sessionmaker = get_database().sessionmaker
    if export.size_bytes is not None:
        size = export.size_bytes
    else:  # not recorded: sum the chunks
        async with sessionmaker() as session:
            chunks = await queries.list_chunk_sizes(session, export.id, export.run_token)
        size = sum(chunk_size for _seq, chunk_size in chunks)
    body = ExportFileBody(sessionmaker, export, size, head_only=request.method == "HEAD")
    response = Response(body, content_type=content_type)
    response.timeout = None  # no total limit: the idle timeout below ends a stuck download
    settings = current_app.extensions["settings"]
    request.scope[SEND_IDLE_TIMEOUT_KEY] = settings.download_idle_timeout
    response.headers["Content-Disposition"] = (
        f'attachment; filename="todos-{export.id}.{export.format}"'
    )
    # The run that wrote the file names its content: a rerun writes it under a new token.
    response.set_etag(export.run_token)
    response.headers["Accept-Ranges"] = "bytes"
    response.content_length = size
    several_ranges = request.range is not None and len(request.range.ranges) > 1
    if size > 0 and not several_ranges:
        try:
            await response.make_conditional(request, accept_ranges=True, complete_length=size)
        except RequestedRangeNotSatisfiable:
            return error_response(
                416, "range not satisfiable", headers={"Content-Range": f"bytes */{size}"}
            )
    return response
