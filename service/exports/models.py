from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, utc_now

EXPORT_STATUSES = ("queued", "in_progress", "complete", "failed")


class Export(Base):
    """One export of the todos; its row is the single source of truth for its status.

    The file lives in `export_chunks`, written by the run named in `run_token`; it
    becomes downloadable only when the same run flips the status to `complete`.
    """

    __tablename__ = "exports"
    # "How many exports has this client pending?" on every POST /export.
    __table_args__ = (Index("ix_exports_client_key_status", "client_key", "status"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # also the arq job id
    format: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    rows: Mapped[int | None] = mapped_column(Integer)
    # Progress while it runs: rows written so far, of `rows_total` (counted at claim time).
    rows_written: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    rows_total: Mapped[int | None] = mapped_column(Integer)
    # Who asked: "user:<id>" when a token came with the request, else "ip:<address>".
    client_key: Mapped[str | None] = mapped_column(String(80))
    size_bytes: Mapped[int | None] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    run_token: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utc_now, server_default=func.now(), index=True
    )
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ExportChunk(Base):
    """A piece of an export's file, in `seq` order, written by one run."""

    __tablename__ = "export_chunks"

    export_id: Mapped[str] = mapped_column(
        ForeignKey("exports.id", ondelete="CASCADE"), primary_key=True
    )
    run_token: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
