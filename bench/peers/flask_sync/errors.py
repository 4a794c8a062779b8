"""JSON errors in the service's two shapes, and the query-string checks that raise them.

Outside /api: {"error": {"status", "message", "request_id", "details"?}}; under /api the
RealWorld model {"errors": {"body": [...], "<field>": [...]}}.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

logger = logging.getLogger(__name__)


class APIError(Exception):
    def __init__(self, status: int, message: str, details: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details


def _is_realworld() -> bool:
    return request.path == "/api" or request.path.startswith("/api/")


def error_response(
    status: int, message: str, details: list[dict[str, str]] | None = None
) -> tuple[Response, int]:
    if _is_realworld():
        errors: dict[str, list[str]] = {"body": [message]}
        if details:
            errors = {"body": [f"{d['field']} {d['message']}".strip() for d in details]}
            for detail in details:
                errors.setdefault(detail["field"], []).append(detail["message"])
        return jsonify({"errors": errors}), status
    body: dict[str, Any] = {
        "status": status,
        "message": message,
        "request_id": g.get("request_id"),
    }
    if details is not None:
        body["details"] = details
    return jsonify({"error": body}), status


def invalid(field: str, message: str, *, where: str = "query parameters") -> APIError:
    # Under /api every validation error is a 422 (RealWorld); elsewhere a bad query is a 400.
    status = 422 if _is_realworld() or where == "request body" else 400
    return APIError(status, f"invalid {where}: {field}", [{"field": field, "message": message}])


def int_arg(name: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(
            name, "Input should be a valid integer, unable to parse string as an integer"
        ) from None
    if value < minimum:
        raise invalid(name, f"Input should be greater than or equal to {minimum}")
    if value > maximum:
        raise invalid(name, f"Input should be less than or equal to {maximum}")
    return value


def float_arg(name: str, default: float, minimum: float, maximum: float) -> float:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise invalid(
            name, "Input should be a valid number, unable to parse string as a number"
        ) from None
    if not math.isfinite(value):
        raise invalid(name, "Input should be a finite number")
    if value < minimum:
        raise invalid(name, f"Input should be greater than or equal to {minimum:g}")
    if value > maximum:
        raise invalid(name, f"Input should be less than or equal to {maximum:g}")
    return value


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(APIError)
    def _api_error(error: APIError) -> tuple[Response, int]:
        return error_response(error.status, error.message, error.details)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> tuple[Response, int]:
        return error_response(error.code or 500, (error.name or "error").lower())

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> tuple[Response, int]:
        logger.exception("unhandled error")  # no exception text to the client
        return error_response(500, "internal server error")
