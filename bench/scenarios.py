"""The scenarios: each loads its servers round by round and returns table rows.

Rounds interleave the servers (ours, twin, ours, twin, ...) so a slow drift of the
machine (another job, thermal state) hits both alike; the table shows medians.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench import seed
from bench.loads import WrkResult, run_wrk
from bench.procs import PeakRss, http_get, http_post_json
from bench.report import MB, Row, median
from bench.servers import Pool, Server

PRODUCT_BODY = json.dumps({"name": "bench product", "price": 9.99, "category": "bench"}).encode()
SLOW_CLIENT_TIMEOUT = 30.0  # every asyncio client ends, answered or not
LABELS = {"ours": "ours", "twin": "twin (Flask sync)", "ours-1w": "ours (1 worker)"}


@dataclass
class Options:
    rounds: int
    duration: float
    warmup: float
    connections: int
    servers: list[str]  # "ours" and/or "twin"
    burst_clients: int
    mixed_clients: int
    export_rows: int
    leak_requests: int


@dataclass
class Run:
    """What the scenarios share: options, the server pool, the database, earlier rows."""

    options: Options
    pool: Pool
    dsn: str  # asyncpg DSN of the benchmark database
    product_ids: list[int]
    asyncio_runner: Callable[..., Any]  # runs a coroutine on the harness's event loop
    rows: list[Row] = field(default_factory=list)

    @property
    def last_seeded_product(self) -> int:
        return self.product_ids[-1]

    def row(self, scenario: str, server: str) -> Row | None:
        for row in self.rows:
            if row.scenario == scenario and row.server == server:
                return row
        return None


@dataclass(frozen=True)
class WrkScenario:
    title: str
    path: str
    method: str = "GET"
    script: str = "report.lua"
    pass_product_ids: bool = False
    adds_products: bool = False  # its rows are deleted after each run


def wrk_scenarios(product_ids: list[int]) -> dict[str, WrkScenario]:
    return {
        "products_id": WrkScenario(
            "GET /products/<id>",
            f"/products/{product_ids[0]}",
            script="products_by_id.lua",
            pass_product_ids=True,
        ),
        "products_list": WrkScenario("GET /products (10 rows)", "/products"),
        "products_post": WrkScenario(
            "POST /products",
            "/products",
            method="POST",
            script="post_product.lua",
            adds_products=True,
        ),
        "articles": WrkScenario("GET /api/articles?limit=20", "/api/articles?limit=20"),
        "items": WrkScenario(
            "GET /items?sort=-created_at&limit=50", "/items?sort=-created_at&limit=50"
        ),
    }


def probe(server: Server, scenario: WrkScenario) -> str:
    """One request before loading: a server that 404s must not pass for a fast one."""
    try:
        if scenario.method == "POST":
            status, body = http_post_json(server.port, scenario.path, PRODUCT_BODY)
        else:
            status, body = http_get(server.port, scenario.path)
    except OSError as error:
        return f"probe failed: {type(error).__name__}"
    if not 200 <= status < 300:
        print(f"  ! {server.label}: {scenario.method} {scenario.path} -> {status}: {body[:200]!r}")
        return f"probe answered {status}"
    return ""


def load_once(run: Run, server: Server, scenario: WrkScenario) -> tuple[WrkResult, int]:
    """Warm-up (discarded), then the measured run while sampling the server tree's RSS."""
    args = (",".join(map(str, run.product_ids)),) if scenario.pass_product_ids else ()
    common = dict(connections=run.options.connections, script=scenario.script, script_args=args)
    run_wrk(server.port, scenario.path, seconds=run.options.warmup, **common)
    with PeakRss(server.process.pid) as rss:
        result = run_wrk(server.port, scenario.path, seconds=run.options.duration, **common)
    if scenario.adds_products:
        run.asyncio_runner(seed.delete_products_after(run.dsn, run.last_seeded_product))
    return result, rss.peak


def wrk_round_record(result: WrkResult, peak: int) -> dict:
    return {
        "rps": result.rps,
        "p50_ms": result.p50_ms,
        "p90_ms": result.p90_ms,
        "p99_ms": result.p99_ms,
        "max_ms": result.max_ms,
        "requests": result.requests,
        "errors": result.errors,
        "error_count": result.error_count,
        "peak_rss_mb": peak / MB,
    }


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def summary_row(scenario: str, server: str, rounds: list[dict], notes: str = "") -> Row:
    if rounds and all(r.get("requests") == 0 for r in rounds):
        notes = "; ".join(filter(None, ["no response at all during the measured runs", notes]))
    kinds: Counter[str] = Counter()
    for r in rounds:
        kinds.update(r.get("errors") or {})
    if +kinds:  # which errors: status >= 400 or socket errors (connect, read, timeout ...)
        listed = ", ".join(f"{kind} {count}" for kind, count in (+kinds).items())
        notes = "; ".join(filter(None, [notes, f"errors: {listed}"]))
    return Row(
        scenario=scenario,
        server=server,
        rps=median([r["rps"] for r in rounds]),
        p50_ms=median([r["p50_ms"] for r in rounds]),
        p99_ms=median([r["p99_ms"] for r in rounds]),
        errors=sum(r["error_count"] for r in rounds),
        peak_rss_mb=max(r["peak_rss_mb"] for r in rounds),
        notes=notes,
        rounds=rounds,
    )


def with_ratios(rows: list[Row]) -> list[Row]:
    """Puts the twin's req/s of the same scenario on every row, for the ours/twin ratio."""
    twin_rps = {row.scenario: row.rps for row in rows if row.server == LABELS["twin"]}
    for row in rows:
        row.twin_rps = twin_rps.get(row.scenario)
    return rows


def run_wrk_scenario(run: Run, key: str, scenario: WrkScenario) -> list[Row]:
    servers = run.pool.need(run.options.servers)
    rounds: dict[str, list[dict]] = {name: [] for name in servers}
    notes = {name: probe(server, scenario) for name, server in servers.items()}
    if scenario.adds_products:
        run.asyncio_runner(seed.delete_products_after(run.dsn, run.last_seeded_product))
    for round_number in range(1, run.options.rounds + 1):
        for name, server in servers.items():
            result, peak = load_once(run, server, scenario)
            rounds[name].append(wrk_round_record(result, peak))
            print(
                f"  {key} round {round_number} {name}: {result.rps:,.0f} req/s, "
                f"p99 {ms(result.p99_ms)}, errors {result.error_count}",
                flush=True,
            )
    return with_ratios(
        [summary_row(scenario.title, LABELS[name], rounds[name], notes[name]) for name in servers]
    )
