"""JSON logging: one object per line on stdout, with the request id and no secrets."""

from __future__ import annotations

import atexit
import collections
import logging
import re
import sys
import threading
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.orjson import OrjsonFormatter

from service.trace_context import current_ids

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# scheme://user:password@host. The password may hold unencoded "@", ":" or "/": it runs to
# the "@" that is followed by a host name and then the path, a query, or the end.
_URL_PASSWORD = re.compile(
    r"(?P<prefix>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^\s?#]*?"
    r"(?P<host>@[A-Za-z0-9._~%\[\]:-]*)(?=[/?#\s\"',;)]|$)"
)


def mask_url_passwords(text: str) -> str:
    """scheme://user:password@host -> scheme://user:***@host, wherever it appears in text."""
    return _URL_PASSWORD.sub(r"\g<prefix>***\g<host>", text)


# The "@" may arrive percent-encoded ("%40"): an HTML form or a client library encodes
# it so in a query string, which the server span records as it came.
_EMAIL = re.compile(
    r"\b([A-Za-z0-9_%+-])[A-Za-z0-9._%+-]*(@|%40)"
    r"([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})\b"
)


def may_hold_email(text: str) -> bool:
    """The cheap test before mask_emails' regular expression."""
    return "@" in text or "%40" in text


def mask_emails(text: str) -> str:
    """jane.doe@example.com -> j***@example.com, jane.doe%40example.com ->
    j***%40example.com (PII stays out of logs and spans)."""
    return _EMAIL.sub(r"\1***\2\3", text)


def scrub(text: str) -> str:
    return mask_emails(mask_url_passwords(text))


class ServiceJsonFormatter(OrjsonFormatter):
    """Adds `timestamp`, `service`, the request and trace ids and the code location;
    masks passwords inside URLs and email addresses.
    """

    def __init__(self, service_name: str) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
        )
        self.service_name = service_name

    def add_fields(
        self, log_record: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_record, record, message_dict)
        log_record["timestamp"] = datetime.fromtimestamp(record.created, tz=UTC).isoformat()
        log_record["service"] = self.service_name
        request_id = request_id_var.get()
        if request_id is not None:
            log_record["request_id"] = request_id
        ids = current_ids()
        if ids is not None:  # outside a span: no keys at all, rather than zeros
            log_record["trace_id"], log_record["span_id"] = ids
        log_record["code.file.path"] = record.pathname
        log_record["code.function.name"] = record.funcName
        log_record["code.line.number"] = record.lineno
        for key, value in log_record.items():
            if isinstance(value, str) and ("://" in value or may_hold_email(value)):
                log_record[key] = scrub(value)


class OncePerInterval(logging.Filter):
    """Lets one record of each kind from loggers under `prefix` through per interval; others
    pass untouched. For OpenTelemetry's exporters: a dead collector warns, not floods.

    On the handler, not on the `opentelemetry` logger: a logger's filters see only the
    records logged on that very logger, never its children's (the exporters log on
    `opentelemetry.exporter...` and `opentelemetry.sdk...`).
    """

    def __init__(self, prefix: str, seconds: float) -> None:
        super().__init__()
        self.prefix = prefix
        self.seconds = seconds
        self.last_seen: dict[tuple[str, int], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefix):
            return True
        # By logger and level: the exporters format their messages, so texts differ.
        key = (record.name, record.levelno)
        now = time.monotonic()
        if now - self.last_seen.get(key, -self.seconds) < self.seconds:
            return False
        self.last_seen[key] = now
        return True


MAX_PENDING_LINES = 10_000
BATCH_LINES = 1_000  # a batch this long wakes the writer before its interval is up
WRITE_INTERVAL_SECONDS = 0.05


class WriterThreadHandler(logging.Handler):
    """Formats a record where it is logged (the request and trace ids live in that task's
    context) and leaves the writing to one thread, which writes and flushes what has
    gathered every 50 ms: under load many lines share one write, and a slow stdout never
    blocks the event loop.

    The standard library's QueueHandler formats on the listener's thread, where the
    context is gone, and its StreamHandler flushes after every line; a queue.Queue wakes
    the writer thread for every line (a lock hand-off per request, 5-10% of a worker's
    CPU under load). Hence this handler: a deque (appends need no lock) drained on a timer.
    """

    def __init__(self, stream: Any) -> None:
        super().__init__()
        self.stream = stream
        self._lines: collections.deque[str] = collections.deque()
        self._wake = threading.Event()
        self._stopping = False
        self._writer = threading.Thread(target=self._write_lines, name="log-writer", daemon=True)
        self._writer.start()
        atexit.register(self.close)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        pending = len(self._lines)
        if pending >= BATCH_LINES:
            self._wake.set()
            # Bounded: when stdout stalls, logging waits (as a StreamHandler would) instead
            # of the backlog growing without end.
            while len(self._lines) >= MAX_PENDING_LINES and self._writer.is_alive():
                time.sleep(0.001)
        self._lines.append(line)

    def _write_lines(self) -> None:
        while True:
            self._wake.wait(WRITE_INTERVAL_SECONDS)
            self._wake.clear()
            stopping = self._stopping
            lines = []
            while self._lines:
                lines.append(self._lines.popleft())
            if lines:
                try:
                    self.stream.write("\n".join(lines) + "\n")
                    self.stream.flush()
                except (OSError, ValueError):  # stdout closed under us: nothing left to do
                    pass
            if stopping:
                return

    def flush(self) -> None:
        """Wait (at most 2 s) until what was logged so far is written."""
        deadline = time.monotonic() + 2
        while self._lines and self._writer.is_alive() and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.005)

    def close(self) -> None:
        """Write out what is pending (at most 2 s) and stop the thread."""
        if self._writer.is_alive():
            self._stopping = True
            self._wake.set()
            self._writer.join(timeout=2)
        atexit.unregister(self.close)
        super().close()


def configure_logging(level: str, service_name: str) -> None:
    """Route every logger (ours, hypercorn's, alembic's) through one JSON handler on stdout."""
    handler = WriterThreadHandler(sys.stdout)
    handler.setFormatter(ServiceJsonFormatter(service_name))
    handler.addFilter(OncePerInterval("opentelemetry", 60))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_service_handler", False):
            root.removeHandler(old)
            old.close()
    handler._service_handler = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # Our access log replaces hypercorn's; its error log goes through the JSON handler.
    logging.getLogger("hypercorn.access").disabled = True
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    for name in ("hypercorn.error", "alembic", "quart.app", "arq"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
