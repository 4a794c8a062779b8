"""Spans and log correlation, seen through an in-memory span exporter."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from quart.testing import QuartClient
from sqlalchemy.ext.asyncio import AsyncSession

from service.app import create_app
from service.products.models import Product
from tests.conftest import make_settings
from tests.factories import make_product

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_SPAN_ID = "b7ad6b7169203331"


def server_span(spans: list[ReadableSpan]) -> ReadableSpan:
    found = [span for span in spans if span.kind == SpanKind.SERVER]
    assert len(found) == 1, [span.name for span in spans]
    return found[0]


def children_of(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [
        span
        for span in spans
        if span.parent is not None and span.parent.span_id == parent.context.span_id
    ]


async def finished_spans(
    exporter: InMemorySpanExporter, wanted: Callable[[list[ReadableSpan]], bool]
) -> list[ReadableSpan]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        spans = list(exporter.get_finished_spans())
        if wanted(spans):
            return spans
        await asyncio.sleep(0.05)
    raise AssertionError([span.name for span in exporter.get_finished_spans()])


async def test_a_request_gives_a_server_span_named_by_its_route_with_one_span_per_query(
    client: QuartClient, session: AsyncSession, spans: InMemorySpanExporter
) -> None:
    product = await make_product(session, name="Lamp")
    spans.clear()

    response = await client.get(f"/products/{product.id}")

    assert response.status_code == 200
    recorded = await finished_spans(
        spans, lambda found: any(s.kind == SpanKind.SERVER for s in found)
    )
    server = server_span(recorded)
    assert server.name == "GET /products/<product_id>"
    assert server.attributes["http.route"] == "/products/<product_id>"
    statements = [
        span.attributes["db.statement"]
        for span in children_of(recorded, server)
        if span.attributes.get("db.system")
    ]
    queries = [
        span
        for span in children_of(recorded, server)
        if "FROM products" in str(span.attributes.get("db.statement"))
    ]
    # One span per statement (not a prepare and an execute); BEGIN/ROLLBACK are their own.
    assert len(queries) == 1, statements
    query = queries[0]
    assert query.attributes["db.system"] == "postgresql"
    statement = query.attributes["db.statement"]
    assert "FROM products" in statement and "$1" in statement
    assert str(product.id) not in statement.replace("$1", "")
    traceparent = response.headers["traceparent"]
    assert traceparent == (
        f"00-{server.context.trace_id:032x}-{server.context.span_id:016x}-"
        f"{int(server.context.trace_flags):02x}"
    )


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "statement"),
    [
        ("GET", "/products/{id}", None, 200, "SELECT"),
        ("GET", "/products", None, 200, "SELECT"),
        ("POST", "/products", {"name": "Desk", "price": 80.0, "category": "Home"}, 201, "INSERT"),
    ],
)
async def test_the_hot_product_routes_send_one_statement_and_no_transaction(
    client: QuartClient,
    session: AsyncSession,
    spans: InMemorySpanExporter,
    method: str,
    path: str,
    body: dict | None,
    status: int,
    statement: str,
) -> None:
    """One round trip each: a read, or a write of one statement, needs no BEGIN and no
    COMMIT/ROLLBACK around it (autocommit: a single statement is atomic by itself)."""
    product = await make_product(session, name="Lamp")
    spans.clear()

    response = await client.open(path.format(id=product.id), method=method, json=body)

    assert response.status_code == status
    recorded = await finished_spans(
        spans, lambda found: any(s.kind == SpanKind.SERVER for s in found)
    )
    statements = [
        str(span.attributes["db.statement"])
        for span in children_of(recorded, server_span(recorded))
        if span.attributes.get("db.system")
    ]
    assert len(statements) == 1 and statements[0].startswith(statement), statements
    if method == "POST":  # committed by itself: another connection sees the row
        created = await session.get(Product, (await response.get_json())["id"])
        assert created is not None and created.name == "Desk"


async def test_an_incoming_traceparent_continues_the_trace(
    client: QuartClient, spans: InMemorySpanExporter
) -> None:
    response = await client.get(
        "/healthz", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"}
    )

    server = server_span(
        await finished_spans(spans, lambda found: any(s.kind == SpanKind.SERVER for s in found))
    )
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert server.parent is not None and format(server.parent.span_id, "016x") == PARENT_SPAN_ID
    assert response.headers["traceparent"].split("-")[1] == TRACE_ID


async def test_a_5xx_marks_the_server_span_as_an_error(
    client: QuartClient, spans: InMemorySpanExporter
) -> None:
    await client.get("/error", query_string={"code": 503})

    server = server_span(
        await finished_spans(spans, lambda found: any(s.kind == SpanKind.SERVER for s in found))
    )
    assert server.name == "GET /error"
    assert server.status.status_code == StatusCode.ERROR


async def test_unknown_routes_do_not_name_spans_by_their_path(
    client: QuartClient, spans: InMemorySpanExporter
) -> None:
    await client.get("/no/such/path/12345")

    server = server_span(
        await finished_spans(spans, lambda found: any(s.kind == SpanKind.SERVER for s in found))
    )
    assert "12345" not in server.name


async def test_an_export_runs_in_the_trace_of_the_request_that_started_it(
    spans: InMemorySpanExporter, session: AsyncSession, clean_tables: None
) -> None:
    app = create_app(make_settings(redis_url=None))  # in-process jobs
    async with app.test_app() as test_app:
        client = test_app.test_client()
        response = await client.post("/export", json={})
        job_id = (await response.get_json())["job_id"]
        recorded = await finished_spans(
            spans, lambda found: any(s.kind == SpanKind.CONSUMER and s.end_time for s in found)
        )

    server = next(s for s in recorded if s.kind == SpanKind.SERVER and s.name == "POST /export")
    producer = next(s for s in recorded if s.kind == SpanKind.PRODUCER)
    consumer = next(s for s in recorded if s.kind == SpanKind.CONSUMER)
    assert producer.parent.span_id == server.context.span_id
    assert consumer.parent.span_id == producer.context.span_id
    assert consumer.context.trace_id == server.context.trace_id
    assert consumer.attributes["job.id"] == job_id
    assert consumer.attributes["job.type"] == "export_todos"
    assert consumer.attributes["job.try"] == 1
    job_queries = [s for s in children_of(recorded, consumer) if s.attributes.get("db.system")]
    assert any("todos" in s.attributes["db.statement"] for s in job_queries)


async def test_enqueueing_on_redis_is_traced(
    client: QuartClient, spans: InMemorySpanExporter
) -> None:
    await client.post("/export", json={})

    recorded = await finished_spans(
        spans, lambda found: any(s.kind == SpanKind.SERVER for s in found)
    )
    server = server_span(recorded)
    redis_spans = [s for s in recorded if s.attributes.get("db.system") == "redis"]
    assert redis_spans
    assert all(s.context.trace_id == server.context.trace_id for s in redis_spans)


async def test_log_lines_carry_the_ids_of_the_active_span(
    client: QuartClient,
    spans: InMemorySpanExporter,
    log_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    logging.getLogger("tests").info("outside any span")
    response = await client.get("/products", headers={"X-Request-ID": "trace-me"})

    server = server_span(
        await finished_spans(spans, lambda found: any(s.kind == SpanKind.SERVER for s in found))
    )
    lines = log_lines()
    outside = next(line for line in lines if line["message"] == "outside any span")
    assert not {"trace_id", "span_id", "request_id"} & outside.keys()
    access = next(line for line in lines if line.get("request_id") == "trace-me")
    assert access["trace_id"] == format(server.context.trace_id, "032x")
    assert access["span_id"] == format(server.context.span_id, "016x")
    assert access["code.function.name"] == "__call__"
    assert access["code.file.path"].endswith("service/middleware.py")
    assert isinstance(access["code.line.number"], int)
    assert response.headers["traceparent"].split("-")[1] == access["trace_id"]


async def test_emails_are_masked_in_logs_and_never_reach_spans(
    client: QuartClient,
    spans: InMemorySpanExporter,
    log_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    logging.getLogger("tests").info(
        "welcome jane.doe@example.com", extra={"who": "bob@example.org"}
    )
    user = {"username": "jane", "email": "jane.doe@example.com", "password": "a-long-password"}
    await client.post("/api/users", json={"user": user})

    line = next(line for line in log_lines() if line["message"].startswith("welcome"))
    assert line["message"] == "welcome j***@example.com"
    assert line["who"] == "b***@example.org"
    recorded = await finished_spans(
        spans, lambda found: any(s.kind == SpanKind.SERVER for s in found)
    )
    for span in recorded:
        for value in span.attributes.values():
            assert "jane.doe@example.com" not in str(value)
            assert "a-long-password" not in str(value)


async def test_emails_in_urls_are_masked_in_span_attributes(
    client: QuartClient, spans: InMemorySpanExporter
) -> None:
    await client.get("/api/profiles/jane.doe@example.com", query_string={"who": "bob@example.org"})

    server = server_span(
        await finished_spans(spans, lambda found: any(s.kind == SpanKind.SERVER for s in found))
    )
    values = [str(value) for value in server.attributes.values()]
    assert any("j***@example.com" in value for value in values), values
    assert not any(
        "jane.doe@example.com" in value or "bob@example.org" in value for value in values
    )
