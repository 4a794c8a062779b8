"""Prometheus metrics (prometheus_client), correct with several hypercorn workers.

`python -m service serve` sets PROMETHEUS_MULTIPROC_DIR (a fresh directory) before
the workers start, so every worker writes its samples there and a scrape of
/metrics, answered by any worker, sums them all. Under another server without that
variable, the process's own registry is served.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import weakref
from typing import Any

from opentelemetry import metrics as otel_metrics
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
    start_http_server,
)
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED_ROUTE = "<unmatched>"  # every unknown path counts under this one label

# The image sets PROMETHEUS_MULTIPROC_DIR=/tmp/metrics and /tmp is an empty tmpfs in the
# containers: the first metric written would fail on the missing directory (the worker
# has no `serve` to prepare it), so make it before any metric below exists.
if os.environ.get(MULTIPROC_ENV):
    os.makedirs(os.environ[MULTIPROC_ENV], exist_ok=True)

HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests answered", ["method", "endpoint", "status"]
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["method", "endpoint", "status", "environment"],
    buckets=LATENCY_BUCKETS,
)
# Connections closed because the request head did not arrive within HTTP_READ_TIMEOUT
# (service/http_edge.py): slowloris, or a client on a very bad link.
HTTP_HEAD_TIMEOUTS = Counter(
    "http_request_head_timeouts_total", "Connections closed: the request head came too slowly"
)
BACKGROUND_JOBS = Counter(
    "background_jobs_total", "Background jobs by outcome", ["job_type", "status"]
)
DATABASE_QUERIES = Counter("database_queries_total", "SQL statements sent", ["operation", "table"])
DATABASE_POOL = Gauge(
    "database_connection_pool",
    "Connection pool: size and checked_out, summed over live processes",
    ["status"],
    multiprocess_mode="livesum",
)
# Multiprocess mode has no process collector: each process publishes its own, by pid,
# into the shared directory. Not registered: a single process has the standard collector.
PROCESS_GAUGES = {
    source: Gauge(name, help_text, ["pid"], multiprocess_mode="liveall", registry=None)
    for source, name, help_text in (
        ("process_resident_memory_bytes", "process_resident_memory_bytes", "Resident memory"),
        ("process_cpu_seconds_total", "process_cpu_seconds", "User and system CPU seconds"),
        ("process_open_fds", "process_open_fds", "Open file descriptors"),
    )
}

# The same measurements as OpenTelemetry instruments: exported over OTLP when a meter
# provider is configured (service/telemetry.py), no-ops otherwise.
_meter = otel_metrics.get_meter("service")
_OTEL_REQUESTS = _meter.create_counter("http_requests", unit="1", description="HTTP requests")
_OTEL_DURATION = _meter.create_histogram(
    "http_request_duration", unit="s", description="Time to answer an HTTP request"
)
_OTEL_JOBS = _meter.create_counter("background_jobs", unit="1", description="Jobs by outcome")
_OTEL_QUERIES = _meter.create_counter("database_queries", unit="1", description="SQL statements")

_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE|JOIN)\s+\"?([A-Za-z_][A-Za-z0-9_]*)", re.IGNORECASE)


def is_multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def render_metrics() -> tuple[bytes, str]:
    """The exposition text: every process's samples in multiprocess mode."""
    publish_pool_metrics()  # this process's at least are current
    if is_multiprocess():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


# Every interface by default: Prometheus scrapes the container from outside it.
def start_metrics_server(port: int, host: str = "0.0.0.0") -> None:  # noqa: S104
    """/metrics on a port of its own, from a thread of this process (prometheus_client's
    server): the arq worker's, and the API's under `serve`, away from the public port.

    In multiprocess mode every process's samples, so the `serve` supervisor can answer for
    its hypercorn workers. Raises OSError when the port is taken.
    """
    registry = REGISTRY
    if is_multiprocess():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    start_http_server(port, addr=host, registry=registry)


@functools.lru_cache(maxsize=1024)  # statements carry placeholders, never values: few texts
def classify_statement(statement: str) -> tuple[str, str]:
    """(operation, table) for database_queries_total; bounded label values."""
    words = statement.lstrip().split(None, 1)
    operation = words[0].upper() if words else "UNKNOWN"
    if operation not in {"SELECT", "INSERT", "UPDATE", "DELETE", "BEGIN", "COMMIT", "ROLLBACK"}:
        operation = "OTHER"
    match = _TABLE.search(statement)
    return operation, match.group(1).lower() if match else ""


# The pools of this process, for publish_pool_metrics (weak: a disposed app's engine goes).
_pools: weakref.WeakSet[Any] = weakref.WeakSet()


@functools.lru_cache(maxsize=1024)
def _query_counter(operation: str, table: str) -> Any:
    return DATABASE_QUERIES.labels(operation, table)


def instrument_engine(engine: AsyncEngine, *, publish_on_checkout: bool = True) -> None:
    """Count statements and publish the pool's size and checked-out connections.

    `publish_on_checkout=False` (the API): the pool gauges are published once a second
    and at every scrape (publish_pool_metrics) instead of at every checkout and checkin,
    which cost four multiprocess gauge writes per request.
    """
    sync_engine = engine.sync_engine
    _pools.add(sync_engine.pool)

    def count_statement(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        operation, table = classify_statement(statement)
        _query_counter(operation, table).inc()
        _OTEL_QUERIES.add(1, {"operation": operation, "table": table})

    event.listen(sync_engine, "before_cursor_execute", count_statement)
    if publish_on_checkout:
        event.listen(sync_engine.pool, "checkout", lambda *_args: publish_pool_metrics())
        # The checkin event fires before the connection is back in the pool.
        event.listen(sync_engine.pool, "checkin", lambda *_args: publish_pool_metrics(1))
    publish_pool_metrics()


def publish_pool_metrics(returning: int = 0) -> None:
    """This process's pools: configured size and connections checked out now."""
    size = checked_out = 0
    for pool in list(_pools):
        pool_size = getattr(pool, "size", None)
        pool_checked_out = getattr(pool, "checkedout", None)
        if callable(pool_size) and callable(pool_checked_out):
            size += pool_size()
            # Never below 0 per pool: a connect cancelled mid-checkout can leave a pool's
            # own count one short, which would hide another pool's real checkouts.
            checked_out += max(pool_checked_out(), 0)
    DATABASE_POOL.labels("size").set(size)
    DATABASE_POOL.labels("checked_out").set(max(checked_out - returning, 0))


def publish_process_metrics() -> None:
    if not is_multiprocess():
        return  # the default registry's ProcessCollector reports this process
    pid = str(os.getpid())
    for family in ProcessCollector(registry=None).collect():
        for sample in family.samples:
            gauge = PROCESS_GAUGES.get(sample.name)
            if gauge is not None:
                gauge.labels(pid).set(sample.value)


async def publish_process_metrics_forever(interval: float = 1.0) -> None:
    while True:
        publish_pool_metrics()
        publish_process_metrics()
        await asyncio.sleep(interval)


def process_exited() -> None:
    """Drop this process's live gauges from the shared directory (its counters stay)."""
    if is_multiprocess():
        with contextlib.suppress(Exception):
            multiprocess.mark_process_dead(os.getpid())


def observe_request(
    method: str, endpoint: str, status: int, environment: str, seconds: float
) -> None:
    status_label = str(status)
    HTTP_REQUESTS.labels(method, endpoint, status_label).inc()
    HTTP_DURATION.labels(method, endpoint, status_label, environment).observe(seconds)
    attributes = {"method": method, "endpoint": endpoint, "status": status_label}
    _OTEL_REQUESTS.add(1, attributes)
    _OTEL_DURATION.record(seconds, {**attributes, "environment": environment})


def count_job(job_type: str, status: str) -> None:
    """background_jobs_total; status is enqueued, started, succeeded or failed."""
    BACKGROUND_JOBS.labels(job_type, status).inc()
    _OTEL_JOBS.add(1, {"job_type": job_type, "status": status})
