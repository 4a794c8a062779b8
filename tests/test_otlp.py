"""End to end over OTLP/HTTP: a real receiver on 127.0.0.1, the API and an arq worker as
separate processes; and the collector down or black-holed."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from service.__main__ import PROJECT_ROOT
from tests.conftest import TestServers


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Receiver:
    """An OTLP/HTTP receiver: keeps every request body by path."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[bytes]] = defaultdict(list)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                receiver.bodies[self.path].append(self.rfile.read(length))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def spans(self) -> list[tuple[dict[str, str], Span]]:
        """(resource attributes, span) for every span received."""
        found = []
        for body in list(self.bodies["/v1/traces"]):
            request = ExportTraceServiceRequest.FromString(body)
            for resource_spans in request.resource_spans:
                resource = {
                    attribute.key: attribute.value.string_value
                    for attribute in resource_spans.resource.attributes
                }
                for scope_spans in resource_spans.scope_spans:
                    found.extend((resource, span) for span in scope_spans.spans)
        return found

    def log_trace_ids(self) -> set[str]:
        ids = set()
        for body in list(self.bodies["/v1/logs"]):
            for resource_logs in ExportLogsServiceRequest.FromString(body).resource_logs:
                for scope_logs in resource_logs.scope_logs:
                    ids.update(record.trace_id.hex() for record in scope_logs.log_records)
        return ids

    def metric_names(self) -> set[str]:
        names = set()
        for body in list(self.bodies["/v1/metrics"]):
            for resource_metrics in ExportMetricsServiceRequest.FromString(body).resource_metrics:
                for scope_metrics in resource_metrics.scope_metrics:
                    names.update(metric.name for metric in scope_metrics.metrics)
        return names


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver()
    started.thread.start()
    yield started
    started.server.shutdown()
    started.server.server_close()


def telemetry_env(endpoint: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE", "APP_", "OTEL_"))}
    env.update(
        {
            "DATABASE_URL": TestServers.database_url,
            "REDIS_URL": TestServers.redis_url,
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_BLRP_SCHEDULE_DELAY": "100",
            "OTEL_METRIC_EXPORT_INTERVAL": "500",
            "WORKER_METRICS_PORT": "0",
            "WORKER_HEALTH_CHECK_INTERVAL": "1",
            "HOST": "127.0.0.1",
        }
    )
    env.update(extra)
    return env


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


async def wait_until_up(base_url: str) -> None:
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get(f"{base_url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("the server did not start")


def stop(process: subprocess.Popen[bytes]) -> float:
    """SIGTERM; the seconds it took to exit."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    return time.monotonic() - started


async def test_one_trace_from_the_request_to_the_worker_and_its_sql(
    receiver: Receiver, clean_tables: None
) -> None:
    port = free_port()
    env = telemetry_env(f"http://127.0.0.1:{receiver.port}", PORT=str(port))
    api = start([sys.executable, "-m", "service", "serve"], env)
    worker = start([sys.executable, "-m", "arq", "jobs.worker.WorkerSettings"], env)
    try:
        base_url = f"http://127.0.0.1:{port}"
        await wait_until_up(base_url)
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
            accepted = await http.post("/export", json={})
            assert accepted.status_code == 202
            trace_id = accepted.headers["traceparent"].split("-")[1]
            status_url = accepted.json()["status_url"]
            deadline = time.monotonic() + 30
            while (await http.get(status_url)).json()["status"] != "complete":
                assert time.monotonic() < deadline, "the export did not complete"
                await asyncio.sleep(0.1)

        deadline = time.monotonic() + 20
        while True:
            in_trace = [
                (res, span) for res, span in receiver.spans() if span.trace_id.hex() == trace_id
            ]
            kinds = {span.kind for _res, span in in_trace}
            if Span.SPAN_KIND_CONSUMER in kinds and trace_id in receiver.log_trace_ids():
                break
            assert time.monotonic() < deadline, f"spans so far: {[s.name for _r, s in in_trace]}"
            await asyncio.sleep(0.2)
    finally:
        stop(worker)
        stop(api)

    by_id = {span.span_id: (res, span) for res, span in in_trace}
    server = next(span for res, span in in_trace if span.kind == Span.SPAN_KIND_SERVER)
    producer = next(span for res, span in in_trace if span.kind == Span.SPAN_KIND_PRODUCER)
    consumer_resource, consumer = next(
        (res, span) for res, span in in_trace if span.kind == Span.SPAN_KIND_CONSUMER
    )
    assert server.name == "POST /export"
    assert by_id[server.span_id][0]["service.role"] == "api"
    assert producer.parent_span_id == server.span_id
    assert consumer.parent_span_id == producer.span_id
    assert consumer_resource["service.role"] == "worker"
    job_sql = [
        span
        for res, span in in_trace
        if span.parent_span_id == consumer.span_id
        and any(attribute.key == "db.system" for attribute in span.attributes)
    ]
    assert any(
        "todos" in attribute.value.string_value
        for span in job_sql
        for attribute in span.attributes
        if attribute.key == "db.statement"
    )
    assert trace_id in receiver.log_trace_ids()
    # Our metrics go out over OTLP too, from both processes.
    assert {"http_requests", "http_request_duration", "background_jobs", "database_queries"} <= (
        receiver.metric_names()
    )


@pytest.mark.parametrize("collector", ["closed port", "black hole"])
async def test_a_dead_collector_neither_fails_requests_nor_holds_up_shutdown(
    collector: str,
) -> None:
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    if collector == "black hole":
        hole.listen(100)  # accepts connections, never answers
        endpoint_port = hole.getsockname()[1]
    else:
        endpoint_port = hole.getsockname()[1]
        hole.close()
    port = free_port()
    # Exports every second (the defaults are 5 s and 60 s), so some fall inside the load.
    env = telemetry_env(
        f"http://127.0.0.1:{endpoint_port}",
        PORT=str(port),
        REDIS_URL="",
        OTEL_BSP_SCHEDULE_DELAY="1000",
        OTEL_BLRP_SCHEDULE_DELAY="1000",
        OTEL_METRIC_EXPORT_INTERVAL="60000",
    )
    api = start([sys.executable, "-m", "service", "serve"], env)
    try:
        base_url = f"http://127.0.0.1:{port}"
        await wait_until_up(base_url)
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
            statuses = []
            for _ in range(10):
                statuses += [
                    r.status_code
                    for r in await asyncio.gather(*(http.get("/healthz") for _ in range(20)))
                ]
                await asyncio.sleep(0.3)  # let the batch processor try to export meanwhile
        assert statuses == [200] * 200
        assert stop(api) < 5
        assert api.returncode == 0
    finally:
        if api.poll() is None:
            api.kill()
        hole.close()


@pytest.mark.parametrize("switch", [{"TRACING_ENABLED": "false"}, {"OTEL_SDK_DISABLED": "true"}])
async def test_tracing_can_be_turned_off(switch: dict[str, str], tmp_path: Any) -> None:
    port = free_port()
    env = telemetry_env("", PORT=str(port), REDIS_URL="", **switch)
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT")
    log_path = tmp_path / "api.log"
    with open(log_path, "wb") as log:
        api = subprocess.Popen(
            [sys.executable, "-m", "service", "serve"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            await wait_until_up(f"http://127.0.0.1:{port}")
            async with httpx.AsyncClient(timeout=10) as http:
                response = await http.get(
                    f"http://127.0.0.1:{port}/products", headers={"X-Request-ID": "no-trace"}
                )
        finally:
            stop(api)
    assert response.status_code == 200
    assert "traceparent" not in response.headers
    access = [line for line in log_path.read_text().splitlines() if '"no-trace"' in line]
    assert access and all('"trace_id"' not in line for line in access)


async def test_grpc_export_when_asked_for() -> None:
    received: list[ExportTraceServiceRequest] = []

    class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request: Any, context: Any) -> Any:
            received.append(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(), server)
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    port = free_port()
    env = telemetry_env(
        f"http://127.0.0.1:{grpc_port}",
        PORT=str(port),
        REDIS_URL="",
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
    )
    api = start([sys.executable, "-m", "service", "serve"], env)
    try:
        await wait_until_up(f"http://127.0.0.1:{port}")
        async with httpx.AsyncClient(timeout=10) as http:
            await http.get(f"http://127.0.0.1:{port}/products")
        deadline = time.monotonic() + 15
        while True:
            names = {
                span.name
                for request in received
                for resource_spans in request.resource_spans
                for scope_spans in resource_spans.scope_spans
                for span in scope_spans.spans
            }
            if "GET /products" in names:
                break
            assert time.monotonic() < deadline, names
            await asyncio.sleep(0.2)
    finally:
        stop(api)
        server.stop(grace=None)
