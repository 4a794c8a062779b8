"""A synchronous Flask twin of part of the service, for the benchmark's "Flask original".

`gunicorn app:app` (see gunicorn.conf.py) serves `app` below.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import articles
import items
import products
from db import init_db
from errors import float_arg, register_error_handlers
from flask import Flask, Response, current_app, g, jsonify, request
from werkzeug.routing import IntegerConverter

SERVICE_NAME = os.environ.get("SERVICE_NAME", "flask-twin")
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
# As in the service: probes are logged at DEBUG, so not at the default level.
_QUIET_PATHS = frozenset({"/healthz"})

access_logger = logging.getLogger("twin.access")


class IdConverter(IntegerConverter):
    """`<id:name>`, as the service has it: 1 .. INTEGER max, anything else is a 404."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(map, min=1, max=2_147_483_647)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, the seeds' fields (python-json-logger's shape, stdlib only)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "service": SERVICE_NAME,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())


def _start_request() -> None:
    incoming = request.headers.get("X-Request-ID")
    sane = incoming is not None and _SANE_REQUEST_ID.fullmatch(incoming)
    g.request_id = incoming if sane else str(uuid.uuid4())
    g.started = time.perf_counter()


def _finish_request(response: Response) -> Response:
    """One JSON access line per request on stdout, as the service (and the seeds) log."""
    response.headers["X-Request-ID"] = g.get("request_id", "")
    duration_ms = round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 3)
    access_logger.log(
        logging.DEBUG if request.path in _QUIET_PATHS else logging.INFO,
        "%s %s %s",
        request.method,
        request.path,
        response.status_code,
        extra={
            "fields": {
                "request_id": g.get("request_id"),
                "http.method": request.method,
                "http.path": request.path,
                "status_code": response.status_code,
                "duration_ms": duration_ms,
                "client_ip": request.remote_addr,
                "user_agent": request.user_agent.string or None,
            }
        },
    )
    return response


def healthz() -> Response:
    """Liveness: the process answers; no dependency is checked."""
    return jsonify({"status": "ok"})


def slow() -> Response:
    # A blocking sleep: it holds one of the worker's threads, as the seed's time.sleep did.
    delay = float_arg("delay", current_app.config["SLOW_ENDPOINT_DELAY"], 0, 30)
    time.sleep(delay)
    return jsonify({"message": f"answered after {delay:g} s", "delay": delay})


def create_app() -> Flask:
    _configure_logging()
    app = Flask(__name__)
    # The service's JSON: keys in declaration order and UTF-8 as is (Flask sorts and escapes).
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.config["SLOW_ENDPOINT_DELAY"] = float(os.environ.get("SLOW_ENDPOINT_DELAY", "5"))
    app.config["MAX_CONTENT_LENGTH"] = 1_048_576
    app.url_map.converters["id"] = IdConverter

    init_db(app)
    app.before_request(_start_request)
    app.after_request(_finish_request)
    register_error_handlers(app)
    app.add_url_rule("/healthz", view_func=healthz)
    app.add_url_rule("/slow", view_func=slow)
    for module in (products, items, articles):
        app.register_blueprint(module.blueprint)
    return app


app = create_app()
