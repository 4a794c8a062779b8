"""OpenTelemetry set-up: the only module that imports the SDK.

Called once per process: by the app (role "api") and by each arq worker ("worker").
Traces always flow through the SDK when tracing is on (so logs carry trace ids and
responses a `traceparent`); spans, metrics and logs leave the process over OTLP only
when an endpoint is configured. The standard variables work: OTEL_SERVICE_NAME,
OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_ENDPOINT / _PROTOCOL / _TIMEOUT,
OTEL_TRACES_EXPORTER=none, OTEL_TRACES_SAMPLER(_ARG), OTEL_SDK_DISABLED; and
TRACING_ENABLED=false turns tracing off.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.instrumentation.asgi import asgi_getter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from service import __version__
from service.config import Settings
from service.logs import mask_emails, may_hold_email

logger = logging.getLogger(__name__)

DEFAULT_EXPORT_TIMEOUT_SECONDS = "2"  # a dead collector must not hold up shutdown
SHUTDOWN_DEADLINE_SECONDS = 2.0
_lock = threading.Lock()
_providers: list[Any] = []
_log_handlers: list[logging.Handler] = []
_configured = False
_ROUTE_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def tracing_enabled(settings: Settings) -> bool:
    return settings.tracing_enabled and os.environ.get("OTEL_SDK_DISABLED", "").lower() != "true"


def _otlp_endpoint_set(signal: str) -> bool:
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    )


def _exporter_wanted(signal: str) -> bool:
    chosen = os.environ.get(f"OTEL_{signal}_EXPORTER", "otlp").strip().lower()
    return chosen != "none" and _otlp_endpoint_set(signal)


def _grpc() -> bool:
    return os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf").strip() == "grpc"


def _resource(settings: Settings, role: str) -> Resource:
    return Resource.create(
        {
            "service.name": os.environ.get("OTEL_SERVICE_NAME") or settings.service_name,
            "service.version": __version__,
            "deployment.environment": settings.app_env,
            "service.role": role,
            "service.instance.id": f"{socket.gethostname()}-{os.getpid()}",
        }
    )


def setup_telemetry(settings: Settings, role: str) -> None:
    """Install the providers and instrumentations once per process (later calls do nothing)."""
    global _configured
    with _lock:
        if _configured:
            return
        _configured = True
        atexit.register(shutdown_telemetry)
        os.environ.setdefault("OTEL_EXPORTER_OTLP_TIMEOUT", DEFAULT_EXPORT_TIMEOUT_SECONDS)
        resource = _resource(settings, role)
        if tracing_enabled(settings):
            _setup_tracing(resource)
        if os.environ.get("OTEL_SDK_DISABLED", "").lower() != "true":
            _setup_metrics(resource)
            _setup_logs(resource)


def _setup_tracing(resource: Resource) -> None:
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    # sampler from OTEL_TRACES_SAMPLER; shut down by `shutdown_telemetry`, not the SDK's atexit
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_span_processor(MaskEmailsProcessor())  # first: before any exporter sees it
    if _exporter_wanted("TRACES"):
        if _grpc():
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _providers.append(provider)
    # One span per SQL statement, from the driver; SQLAlchemy's instrumentation is not added.
    AsyncPGInstrumentor().instrument(tracer_provider=provider)
    RedisInstrumentor().instrument(tracer_provider=provider)


def _setup_metrics(resource: Resource) -> None:
    if not _exporter_wanted("METRICS"):
        return
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    if _grpc():
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    provider = MeterProvider(
        resource=resource,
        metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())],
        shutdown_on_exit=False,
    )
    metrics.set_meter_provider(provider)
    _providers.append(provider)


def _setup_logs(resource: Resource) -> None:
    if not _exporter_wanted("LOGS"):
        return
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    if _grpc():
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    set_logger_provider(provider)
    _providers.append(provider)
    handler = LoggingHandler(level=logging.INFO, logger_provider=provider)
    handler.addFilter(_not_from_the_exporters)
    logging.getLogger().addHandler(handler)
    _log_handlers.append(handler)


def _not_from_the_exporters(record: logging.LogRecord) -> bool:
    return not record.name.startswith("opentelemetry")


class MaskEmailsProcessor(SpanProcessor):
    """Masks email addresses in span attributes (URLs, targets, query strings) before export.

    Instrumentations set attributes after a span starts, so this runs at `on_end`, ahead
    of the exporting processors. Ended spans' attributes are read-only through the API;
    the SDK keeps them in `_attributes._dict`, which is rewritten in place here.
    """

    def on_end(self, span: Any) -> None:
        attributes = getattr(getattr(span, "_attributes", None), "_dict", None)
        if not attributes:
            return
        for key, value in list(attributes.items()):
            if isinstance(value, str) and may_hold_email(value):
                attributes[key] = mask_emails(value)


def add_span_processor(processor: SpanProcessor) -> None:
    """For tests: see the spans (e.g. an in-memory exporter)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.add_span_processor(processor)


def shutdown_telemetry(deadline_seconds: float = SHUTDOWN_DEADLINE_SECONDS) -> None:
    """Flush and stop the providers side by side, within one deadline.

    One after the other, providers facing a black-holed collector would each wait out
    an export in flight and then their own flush; in daemon threads joined against one
    deadline, shutdown takes at most `deadline_seconds`.
    """

    def stop(provider: Any) -> None:
        try:
            provider.shutdown()
        except Exception:
            logger.warning("telemetry shutdown failed for %s", type(provider).__name__)

    # logging.shutdown() at exit would flush this handler again, waiting on the collector.
    for handler in _log_handlers:
        logging.getLogger().removeHandler(handler)
    _log_handlers.clear()
    threads = [threading.Thread(target=stop, args=(p,), daemon=True) for p in _providers]
    _providers.clear()
    for thread in threads:
        thread.start()
    ends_at = time.monotonic() + deadline_seconds
    for thread in threads:
        thread.join(max(ends_at - time.monotonic(), 0))


_server_tracer = trace.get_tracer("service.http")


def _client_address(scope: Mapping[str, Any]) -> str | None:
    client = scope.get("client")
    return client[0] if client else None


class ServerSpanMiddleware:
    """One SERVER span per HTTP request, continuing an incoming `traceparent`.

    Written here instead of using opentelemetry-instrumentation-asgi's middleware, which
    cost about 0.2 ms of CPU per request on the hot reads (bench/RESULTS.md): it records
    a dozen attributes and four OpenTelemetry metrics per request (ours come from
    prometheus_client already) and wraps `send` and `receive` in more context changes.
    This keeps what the traces are used for: the W3C context, the route as the name,
    method, target, status, client, and the error status of a 5xx or an exception.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "")
        target = scope.get("path", "")
        if scope.get("query_string"):
            target = f"{target}?{scope['query_string'].decode('latin-1')}"
        attributes = {
            "http.method": method,
            "http.scheme": scope.get("scheme", "http"),
            "http.flavor": scope.get("http_version", ""),
            "http.target": target,
        }
        client = _client_address(scope)
        if client:
            attributes["net.peer.ip"] = client
        with _server_tracer.start_as_current_span(
            method,  # renamed to "METHOD /route" once routing has matched (name_server_span)
            context=propagate.extract(scope, getter=asgi_getter),
            kind=SpanKind.SERVER,
            attributes=attributes,
            set_status_on_exception=False,
        ) as span:
            if not span.is_recording():
                await self.app(scope, receive, send)
                return

            async def send_recording_status(message: Any) -> None:
                if message["type"] == "http.response.start":
                    status = message["status"]
                    span.set_attribute("http.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                await send(message)

            try:
                await self.app(scope, receive, send_recording_status)
            except Exception as error:
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                raise


def wrap_asgi(app: Any) -> Any:
    """Server spans around the ASGI app."""
    return ServerSpanMiddleware(app)


@functools.lru_cache(maxsize=512)  # one entry per route
def route_template(rule: str) -> str:
    """`/items/<id:item_id>` -> `/items/<item_id>`: what spans and metrics are named by."""
    return _ROUTE_CONVERTER.sub(r"<\1>", rule)


def name_server_span(method: str, template: str, *, route_known: bool = True) -> None:
    span = trace.get_current_span()
    if span.is_recording():
        span.update_name(f"{method} {template}")
        if route_known:
            span.set_attribute("http.route", template)


_tracer = trace.get_tracer("service.jobs")


@contextmanager
def producer_span(job_type: str, job_id: str) -> Iterator[dict[str, str]]:
    """A PRODUCER span around enqueueing; yields the W3C context to carry inside the job."""
    with _tracer.start_as_current_span(
        f"{job_type} publish",
        kind=SpanKind.PRODUCER,
        attributes={"job.id": job_id, "job.type": job_type, "messaging.system": "arq"},
    ):
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        yield carrier


@contextmanager
def consumer_span(
    job_type: str, job_id: str, job_try: int, carrier: Mapping[str, str] | None
) -> Iterator[None]:
    """A CONSUMER span for running a job, child of the request that enqueued it."""
    parent = propagate.extract(dict(carrier or {}))
    with _tracer.start_as_current_span(
        f"{job_type} process",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={
            "job.id": job_id,
            "job.type": job_type,
            "job.try": job_try,
            "messaging.system": "arq",
        },
    ) as span:
        try:
            yield
        except BaseException as error:
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            raise
