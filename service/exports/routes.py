"""Start an export, follow its status, download the file (todo seeds)."""

from __future__ import annotations

from quart import Blueprint, Response, current_app
from quart_schema import document_response, validate_request, validate_response
from werkzeug.datastructures import Headers

from service.db import get_session
from service.errors import Conflict, NotFound
from service.exports import queries
from service.exports.clients import client_key
from service.exports.download import file_response
from service.exports.encoding import CONTENT_TYPES
from service.exports.life import start_export
from service.exports.models import Export
from service.exports.schemas import (
    ExportAccepted,
    ExportCreate,
    ExportFile,
    ExportOut,
    export_out,
)
from service.exports.status import no_worker_notice
from service.openapi import documents_errors

blueprint = Blueprint("exports", __name__)


async def find_export(export_id: str) -> Export:
    export = await queries.get_export(get_session(), export_id)
    if export is None:
        raise NotFound(f"export {export_id} not found")
    return export


@blueprint.post("/export")
@documents_errors(429)  # EXPORT_MAX_PENDING exports of this client pending
@validate_request(ExportCreate)
@validate_response(ExportAccepted, 202)
async def create_export(data: ExportCreate) -> tuple[ExportAccepted, int, Headers]:
    settings = current_app.extensions["settings"]
    export = await start_export(
        get_session(), data.format, client_key=await client_key(), settings=settings
    )
    status_url = f"/exports/{export.id}"
    # The status of the export itself: the same request again gets the pending one back.
    accepted = ExportAccepted(job_id=export.id, status=export.status, status_url=status_url)
    return accepted, 202, Headers({"Location": status_url})


@blueprint.get("/exports/<export_id>")
@validate_response(ExportOut)
async def get_export(export_id: str) -> ExportOut:
    export = await find_export(export_id)
    return export_out(export, notice=await no_worker_notice(export))


@blueprint.get("/exports/<export_id>/download")
@documents_errors(409)  # not complete (yet)
@document_response(ExportFile)
async def download_export(export_id: str) -> Response:
    export = await find_export(export_id)
    if export.status != "complete" or export.run_token is None:
        raise Conflict(f"export {export_id} is {export.status}, not complete")
    return await file_response(export, CONTENT_TYPES[export.format])
