from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, model_serializer
from pydantic.functional_serializers import SerializerFunctionWrapHandler

from service.exports.models import Export
from service.fields import UTCDateTime

ExportFormat = Literal["csv", "json"]
ExportStatus = Literal["queued", "in_progress", "complete", "failed"]


class ExportCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: ExportFormat = "csv"


class ExportAccepted(BaseModel):
    job_id: str
    status: ExportStatus
    status_url: str


class ExportOut(BaseModel):
    job_id: str
    status: ExportStatus
    format: ExportFormat
    rows: int | None
    # Progress: rows in the file so far, of the todos counted when the export started
    # (null until then); updated once per batch. When complete, both equal `rows`.
    rows_written: int
    rows_total: int | None
    created_at: UTCDateTime
    finished_at: UTCDateTime | None
    download_url: str | None = None
    error: str | None = None
    # Only while queued with no worker checking in (service/exports/status.py).
    notice: str | None = None

    @model_serializer(mode="wrap")
    def _drop_absent_optionals(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # download_url only when complete, error only when failed, notice only when there is
        # one: absent, not null.
        data = handler(self)
        for key in ("download_url", "error", "notice"):
            if data.get(key) is None:
                data.pop(key, None)
        return data


class ExportFile(BaseModel):
    """The finished export's file (documentation only): CSV, or a JSON array of todos."""

    openapi_response: ClassVar[dict[str, Any]] = {
        "description": "the export file, as an attachment",
        "headers": {"Content-Disposition": {"schema": {"type": "string"}}},
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
        },
    }


def export_out(export: Export, notice: str | None = None) -> ExportOut:
    """What GET /exports/<id> and the page show of an export."""
    return ExportOut(
        job_id=export.id,
        status=export.status,  # type: ignore[arg-type]
        format=export.format,  # type: ignore[arg-type]
        rows=export.rows,
        rows_written=export.rows_written or 0,  # None on a row not yet flushed
        rows_total=export.rows_total,
        created_at=export.created_at,
        finished_at=export.finished_at,
        download_url=f"/exports/{export.id}/download" if export.status == "complete" else None,
        error=export.error if export.status == "failed" else None,
        notice=notice,
    )
