"""The log writer thread: every line written once, in order, batched, and bounded; and the
throttle on OpenTelemetry's own error records."""

from __future__ import annotations

import logging
import threading
import time

from service import logs
from service.logs import OncePerInterval, WriterThreadHandler, configure_logging


class RecordingStream:
    """Counts writes and flushes; can be made to stall like a blocked stdout."""

    def __init__(self) -> None:
        self.writes: list[str] = []
        self.flushes = 0
        self.unblocked = threading.Event()
        self.unblocked.set()

    def write(self, text: str) -> None:
        self.unblocked.wait(10)
        self.writes.append(text)

    def flush(self) -> None:
        self.flushes += 1


def make_logger(handler: logging.Handler, name: str) -> logging.Logger:
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)
    return logger


def test_lines_are_written_once_in_order_and_batched() -> None:
    stream = RecordingStream()
    handler = WriterThreadHandler(stream)
    logger = make_logger(handler, "test.writer.order")
    for number in range(5_000):
        logger.info("line %d", number)
    handler.flush()
    written = "".join(stream.writes).splitlines()
    assert written == [f"line {number}" for number in range(5_000)]
    # Far fewer writes than lines: the thread takes what gathered, not one line at a time.
    assert len(stream.writes) < 100
    handler.close()


def test_close_writes_what_is_pending() -> None:
    stream = RecordingStream()
    handler = WriterThreadHandler(stream)
    logger = make_logger(handler, "test.writer.close")
    logger.info("the last words")
    handler.close()
    assert "".join(stream.writes) == "the last words\n"
    assert not handler._writer.is_alive()


def test_a_stalled_stream_bounds_the_backlog(monkeypatch) -> None:
    monkeypatch.setattr(logs, "MAX_PENDING_LINES", 2_000)
    stream = RecordingStream()
    stream.unblocked.clear()  # the writer thread blocks in its first write
    handler = WriterThreadHandler(stream)
    logger = make_logger(handler, "test.writer.stall")
    logger.info("first")
    time.sleep(0.2)  # the writer takes "first" and hangs on the stalled stream

    def log_a_lot() -> None:
        for number in range(5_000):
            logger.info("line %d", number)

    producer = threading.Thread(target=log_a_lot, daemon=True)
    producer.start()
    producer.join(1.0)
    # The producer waits instead of piling up lines without end.
    assert producer.is_alive()
    assert len(handler._lines) <= 2_000
    stream.unblocked.set()
    producer.join(10)
    assert not producer.is_alive()
    handler.close()
    written = "".join(stream.writes).splitlines()
    assert written == ["first"] + [f"line {number}" for number in range(5_000)]


def test_telemetry_export_errors_are_logged_once_a_minute_per_logger() -> None:
    # The service's handler carries the filter: records of the exporters' own loggers
    # (children of "opentelemetry") are throttled, everything else passes.
    configure_logging("INFO", "test-service")
    service_handler = next(
        handler
        for handler in logging.getLogger().handlers
        if getattr(handler, "_service_handler", False)
    )
    throttles = [f for f in service_handler.filters if isinstance(f, OncePerInterval)]
    assert len(throttles) == 1

    stream = RecordingStream()
    handler = WriterThreadHandler(stream)
    handler.addFilter(OncePerInterval("opentelemetry", 60))
    exporter = make_logger(handler, "opentelemetry.exporter.otlp.proto.http.trace_exporter")
    ours = make_logger(handler, "service.errors")
    for _ in range(20):
        exporter.error("Failed to export span batch")
        ours.error("database unavailable")
    exporter.warning("Transient error, retrying")
    handler.flush()
    written = "".join(stream.writes).splitlines()
    assert written.count("Failed to export span batch") == 1
    assert written.count("Transient error, retrying") == 1  # another level: its own budget
    assert written.count("database unavailable") == 20
    handler.close()
