"""The one place that turns every error into JSON.

Shape: {"error": {"status", "message", "request_id", "details"?}}, and under /api the
RealWorld model {"errors": {"body": [...], "<field>": [...]}}. No HTML page and no
exception text ever reaches a client.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from quart import Quart, Response, has_request_context, jsonify, request
from quart_schema import RequestSchemaValidationError
from quart_schema.validation import QuerystringValidationError
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from service.logs import request_id_var

logger = logging.getLogger(__name__)


# The shapes below document the answers (service/openapi.py); `error_response` builds them
# as plain dicts, which is cheaper than building models on every error.
class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str = Field(description="the offending field, dotted (`user.email`); empty: the body")
    message: str


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: int = Field(description="the HTTP status, repeated")
    message: str
    request_id: str = Field(description="the X-Request-ID of the answer")
    details: list[ErrorDetail] = Field(default=[], description="present when known")
    details_omitted: int = Field(
        default=0, description="field errors left out of `details` (present when some were)"
    )


class ErrorOut(BaseModel):
    """An error: `{"error": {"status", "message", "request_id", "details"?}}`."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorBody


class RealWorldErrors(BaseModel):
    model_config = ConfigDict(extra="allow")

    body: list[str] = Field(description="every message")
    # One more key per offending field, with that field's messages.
    __pydantic_extra__: dict[str, list[str]]


class RealWorldErrorOut(BaseModel):
    """An error under /api (RealWorld): `{"errors": {"body": [...], "<field>": [...]}}`."""

    model_config = ConfigDict(extra="forbid")

    errors: RealWorldErrors


class APIError(Exception):
    """An error a route raises on purpose; rendered with its status and message."""

    status = 500
    message = "internal server error"

    def __init__(
        self, message: str | None = None, *, status: int | None = None, details: Any = None
    ) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.status = status or self.status
        self.details = details


class BadRequest(APIError):
    status = 400
    message = "bad request"


class NotFound(APIError):
    status = 404
    message = "not found"


class Conflict(APIError):
    status = 409
    message = "conflict"


class UnsupportedMediaType(APIError):
    status = 415
    message = "unsupported media type"


class Unprocessable(APIError):
    status = 422
    message = "validation failed"


class ServiceUnavailable(APIError):
    status = 503
    message = "service unavailable"


# Exceptions that mean "the database is not reachable right now", not "the code is wrong".
DATABASE_UNAVAILABLE: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,  # pool checkout timed out
    ConnectionError,
    TimeoutError,
)


def is_realworld_request() -> bool:
    """The /api routes answer in the RealWorld (Conduit) error model."""
    return has_request_context() and (request.path == "/api" or request.path.startswith("/api/"))


def _field_key(field: str) -> str:
    # "user.email" -> "email", "tagList.0" -> "tagList"
    parts = [part for part in field.split(".") if part and not part.isdigit()]
    return parts[-1] if parts else "body"


def realworld_errors(message: str, details: Any) -> dict[str, list[str]]:
    """{"body": [...messages], "<field>": [...]} as the RealWorld spec has it."""
    if not isinstance(details, list) or not details:
        return {"body": [message]}
    errors: dict[str, list[str]] = {"body": []}
    for detail in details:
        field, text = detail.get("field", ""), detail.get("message", "")
        errors["body"].append(f"{field} {text}".strip())
        if field:
            errors.setdefault(_field_key(field), []).append(text)
    return errors


def error_payload(
    status: int,
    message: str,
    details: Any = None,
    *,
    realworld: bool,
    request_id: str,
    omitted: int = 0,
) -> dict[str, Any]:
    """The error document, without a request context (the ASGI layer renders some too)."""
    if realworld:
        errors = realworld_errors(message, details)
        if omitted:
            errors["body"].append(f"and {omitted} more errors")
        return {"errors": errors}
    body: dict[str, Any] = {"status": status, "message": message, "request_id": request_id}
    if details is not None:
        body["details"] = details
    if omitted:
        body["details_omitted"] = omitted
    return {"error": body}


def error_response(
    status: int,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
    *,
    omitted: int = 0,
) -> Response:
    payload = error_payload(
        status,
        message,
        details,
        realworld=is_realworld_request(),
        request_id=request_id_var.get(),
        omitted=omitted,
    )
    response = jsonify(payload)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


# An error answer stays small whatever the request (a body of 70,000 unknown keys made a
# 4.9 MB one): at most this many field errors, their names and messages clipped, within
# about this many characters (the RealWorld shape repeats them, and stays under 16 KB);
# `details_omitted` counts the rest. The summary message names at most SUMMARY_FIELDS.
MAX_ERROR_DETAILS = 50
MAX_ERROR_DETAILS_CHARS = 5000
MAX_FIELD_CHARS = 100
MAX_MESSAGE_CHARS = 200
SUMMARY_FIELDS = 10


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validation_details(error: Exception) -> tuple[list[dict[str, str]], int]:
    """The first field names and messages of a pydantic ValidationError (or a bare
    TypeError), and how many were left out."""
    errors = getattr(error, "errors", None)
    if not callable(errors):
        return [
            {"field": "", "message": _clip(str(error) or "invalid value", MAX_MESSAGE_CHARS)}
        ], 0
    details: list[dict[str, str]] = []
    size = 0
    # Bounded cost too: request bodies cannot hold more values than MAX_JSON_VALUES.
    items = errors(include_url=False, include_input=False, include_context=False)
    for item in items:
        if len(details) == MAX_ERROR_DETAILS or size >= MAX_ERROR_DETAILS_CHARS:
            break
        field = _clip(".".join(str(part) for part in item["loc"]), MAX_FIELD_CHARS)
        message = _clip(item["msg"].removeprefix("Value error, "), MAX_MESSAGE_CHARS)
        size += len(field) + len(message)
        details.append({"field": field, "message": message})
    return details, len(items) - len(details)


def _summary(prefix: str, details: list[dict[str, str]], omitted: int) -> str:
    fields = sorted({d["field"] for d in details if d["field"]})
    if not fields:
        return prefix
    named = ", ".join(fields[:SUMMARY_FIELDS])
    more = len(fields) - SUMMARY_FIELDS + omitted
    return f"{prefix}: {named}" + (f" and {more} more" if more > 0 else "")


async def _api_error(error: APIError) -> Response:
    return error_response(error.status, error.message, error.details)


async def _body_invalid(error: RequestSchemaValidationError) -> Response:
    details, omitted = validation_details(error.validation_error)
    message = _summary("invalid request body", details, omitted)
    return error_response(422, message, details, omitted=omitted)


async def _query_invalid(error: QuerystringValidationError) -> Response:
    details, omitted = validation_details(error.validation_error)
    status = 422 if is_realworld_request() else 400  # RealWorld: every validation error is a 422
    message = _summary("invalid query parameters", details, omitted)
    return error_response(status, message, details, omitted=omitted)


async def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    headers = {}
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        headers["Allow"] = ", ".join(sorted(error.valid_methods))
    message = (error.name or "error").lower()
    if status >= 500:
        logger.error("HTTP %s raised inside the service", status)
    return error_response(status, message, headers=headers)


MIGRATE_HINT = "run `python -m service migrate`"


def database_mistake(error: BaseException) -> str | None:
    """One line for the log when `error` says the database or its schema is missing (a
    deployment step left out, not a bug and not an outage); None for any other error.

    PostgreSQL: 3D000 (no such database), 42P01 (no such table), 42703 (no such column, a
    migration missing: the SQL comes from the models). SQLite says it in words.
    """
    original = getattr(error, "orig", None) or error
    sqlstate = getattr(original, "sqlstate", None) or ""
    message = str(original).split("\n", 1)[0]
    if sqlstate == "3D000":
        return f"database missing ({message}): create it, then {MIGRATE_HINT}"
    if sqlstate == "42P01" or message.startswith("no such table"):
        return f"database schema missing ({message}): {MIGRATE_HINT}"
    if sqlstate == "42703" or message.startswith("no such column"):
        return f"database schema behind the code ({message}): {MIGRATE_HINT}"
    return None


async def _database_unavailable(error: Exception) -> Response:
    mistake = database_mistake(error)
    if mistake is None:
        logger.warning("database unavailable: %s", type(error).__name__)
    else:
        # Every request fails until someone acts: an ERROR, which the alerts count.
        logger.error(mistake)
    return error_response(503, "database unavailable, try again later")


# SQLSTATE classes meaning "the server cannot take this now": connection exceptions (08),
# insufficient resources such as too many connections (53), operator intervention such as
# a shutdown or recovery in progress (57P). asyncpg raises these as plain driver errors.
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P")


# SQLSTATE class 22, data exceptions: a value the database refuses (a NUL character, a
# number out of range, ...). asyncpg raises some as plain driver errors, not DataError.
_DATA_EXCEPTION_SQLSTATE = "22"


async def _database_error(error: sa_exc.DBAPIError) -> Response:
    sqlstate = getattr(error.orig, "sqlstate", None) or ""
    if (
        error.connection_invalidated
        or sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
        or database_mistake(error) is not None
    ):
        return await _database_unavailable(error)
    if sqlstate.startswith(_DATA_EXCEPTION_SQLSTATE):
        return await _data_error(error)
    return await _unexpected(error)


async def _integrity_error(error: sa_exc.IntegrityError) -> Response:
    logger.info("integrity error: %s", type(error.orig).__name__)
    return error_response(409, "the request conflicts with existing data")


async def _data_error(error: sa_exc.DBAPIError) -> Response:
    logger.info("data error: %s", type(error.orig).__name__)
    return error_response(422, "a value cannot be stored")


async def _unexpected(error: Exception) -> Response:
    logger.exception("unhandled error")
    return error_response(500, "internal server error")


def register_error_handlers(app: Quart) -> None:
    app.register_error_handler(APIError, _api_error)
    app.register_error_handler(QuerystringValidationError, _query_invalid)
    app.register_error_handler(RequestSchemaValidationError, _body_invalid)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(sa_exc.IntegrityError, _integrity_error)
    app.register_error_handler(sa_exc.DataError, _data_error)
    for exception in DATABASE_UNAVAILABLE:
        app.register_error_handler(exception, _database_unavailable)
    app.register_error_handler(sa_exc.DBAPIError, _database_error)
    app.register_error_handler(Exception, _unexpected)
