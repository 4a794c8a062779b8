"""Scenarios only our service has: telemetry cost, the export job, the leak check."""

from __future__ import annotations

import json
import time

from bench import seed
from bench.loads import run_wrk
from bench.otlp_sink import OtlpSink
from bench.procs import PeakRss, command_line, http_get, http_post_json, rss_by_pid, tree_rss
from bench.report import MB, Row, median
from bench.scenarios import (
    Run,
    load_once,
    ms,
    summary_row,
    wrk_round_record,
    wrk_scenarios,
)

EXPORT_POLL_SECONDS = 0.05
LEAK_WARMUP_SECONDS = 10.0
LEAK_CHUNK_SECONDS = 15.0


def run_telemetry(run: Run, sink: OtlpSink, metrics_note: str) -> list[Row]:
    """GET /products/<id> with telemetry exported over OTLP, against all of it off.

    Variants: traces + metrics exported (the issue's "telemetry on"); the same plus every
    log line over OTLP; traces + metrics with 10% of traces; everything off.
    """
    scenario = wrk_scenarios(run.product_ids)["products_id"]
    variants = {
        "ours-otel-traces-metrics": "ours, traces + metrics over OTLP",
        "ours-otel-on": "ours, traces + metrics + logs over OTLP",
        "ours-otel-sampled": "ours, traces + metrics, 10% of traces",
        "ours-otel-off": "ours, telemetry off",
    }
    rounds: dict[str, list[dict]] = {key: [] for key in variants}
    for round_number in range(1, run.options.rounds + 1):
        for key in variants:
            # One at a time: several servers' pools together would exceed PostgreSQL's
            # max_connections (100 here) and turn requests into 503s.
            server = run.pool.need([key])[key]
            result, peak = load_once(run, server, scenario)
            rounds[key].append(wrk_round_record(result, peak))
            print(
                f"  telemetry round {round_number} {key}: {result.rps:,.0f} req/s, "
                f"p99 {ms(result.p99_ms)}",
                flush=True,
            )
    run.pool.need([])  # stopping flushes the exporters: the sink's counts are complete
    rows = {
        key: summary_row(f"telemetry: {scenario.title}", label, rounds[key])
        for key, label in variants.items()
    }
    off = rows["ours-otel-off"]
    received = ", ".join(
        f"{counts['posts']} {path.rsplit('/', 1)[-1]} posts ({counts['bytes'] / MB:.1f} MB)"
        for path, counts in sink.snapshot().items()
    )
    rows["ours-otel-on"].notes = _join(
        f"OTLP/HTTP to a local sink, which got {received}", rows["ours-otel-on"].notes
    )
    for key, row in rows.items():
        if key != "ours-otel-off" and row.rps and off.rps:
            cost = f"telemetry costs {(off.rps - row.rps) / off.rps * 100:.1f}% of req/s"
            row.notes = _join(cost, row.notes)
    off.notes = _join(metrics_note, off.notes)  # off.notes: summary_row's error kinds
    return list(rows.values())


def _join(*parts: str) -> str:
    return "; ".join(part for part in parts if part)


def _poll_export(port: int, job_id: str, deadline_seconds: float) -> dict:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        status, body = http_get(port, f"/exports/{job_id}")
        export = json.loads(body) if status == 200 else {}
        if export.get("status") in ("complete", "failed"):
            return export
        time.sleep(EXPORT_POLL_SECONDS)
    return {"status": f"not complete after {deadline_seconds:.0f} s"}


def _export_once(run: Run, api_port: int, worker_pid: int, rows: int) -> dict:
    before = tree_rss(worker_pid)
    with PeakRss(worker_pid, interval=0.05) as rss:
        started = time.monotonic()
        status, body = http_post_json(api_port, "/export", b'{"format": "csv"}')
        if status != 202:
            raise RuntimeError(f"POST /export answered {status}: {body[:300]!r}")
        export = _poll_export(api_port, json.loads(body)["job_id"], 120 + rows / 2000)
        seconds = time.monotonic() - started
    ok = export.get("status") == "complete" and export.get("rows") == rows
    return {
        "seconds": seconds,
        "export": export,
        "ok": ok,
        "worker_rss_before_mb": before / MB,
        "peak_rss_mb": rss.peak / MB,
    }


def run_export(run: Run) -> list[Row]:
    """An export of `export_rows` todos by the arq worker: time until complete, worker RSS."""
    rows = run.options.export_rows
    run.pool.need([])  # nobody holds the todos table while it is reloaded
    run.asyncio_runner(seed.seed_todos(run.dsn, rows))
    servers = run.pool.need(["ours-redis", "worker"])
    api, worker = servers["ours-redis"], servers["worker"]
    records = []
    for round_number in range(1, run.options.rounds + 1):
        record = _export_once(run, api.port, worker.process.pid, rows)
        records.append(record)
        print(
            f"  export round {round_number}: {record['export'].get('status')} "
            f"in {record['seconds']:.2f} s, worker peak {record['peak_rss_mb']:.0f} MB",
            flush=True,
        )
    seconds = median([r["seconds"] for r in records]) or 0.0
    before = median([r["worker_rss_before_mb"] for r in records]) or 0.0
    peak = max(r["peak_rss_mb"] for r in records)
    failed = sum(not r["ok"] for r in records)
    return [
        Row(
            scenario=f"export: {rows:,} todos to CSV",
            server="ours + arq worker",
            errors=failed,
            peak_rss_mb=peak,
            notes=(
                f"{seconds:.2f} s until complete (median; {rows / seconds:,.0f} rows/s); "
                f"worker RSS {before:.0f} MB before, peak {peak:.0f} MB"
            ),
            rounds=records,
        )
    ]


def _role(pid: int, root_pid: int, tree: dict[int, int]) -> str:
    cmd = command_line(pid)
    if "resource_tracker" in cmd:
        return "resource tracker"
    if pid == root_pid:
        return "supervisor" if len(tree) > 1 else "worker"
    return "worker"


def run_leak(run: Run) -> list[Row]:
    """RSS of each API process after a warm-up and after 200,000 GET /products/<id>."""
    scenario = wrk_scenarios(run.product_ids)["products_id"]
    run.pool.stop("ours")  # a fresh server: the growth measured is this run's alone
    server = run.pool.need(["ours"])["ours"]
    args = (",".join(map(str, run.product_ids)),)
    common = dict(connections=run.options.connections, script=scenario.script, script_args=args)
    run_wrk(server.port, scenario.path, seconds=LEAK_WARMUP_SECONDS, **common)
    before = rss_by_pid(server.process.pid)
    rounds, total = [], 0
    with PeakRss(server.process.pid) as rss:
        while total < run.options.leak_requests:
            last_rps = rounds[-1]["rps"] if rounds else 0.0
            remaining = run.options.leak_requests - total
            seconds = min(LEAK_CHUNK_SECONDS, remaining / last_rps + 1) if last_rps else 5.0
            result = run_wrk(server.port, scenario.path, seconds=seconds, **common)
            rounds.append(wrk_round_record(result, 0))
            total += result.requests
    after = rss_by_pid(server.process.pid)
    growth = []
    for pid, rss_before in sorted(before.items()):
        role = _role(pid, server.process.pid, before)
        if pid in after and role == "worker":
            change = (after[pid] - rss_before) / rss_before * 100
            growth.append(
                f"worker {pid}: {rss_before / MB:.1f} -> {after[pid] / MB:.1f} MB ({change:+.1f}%)"
            )
    row = summary_row(f"leak: {total:,} x {scenario.title}", "ours", rounds)
    row.peak_rss_mb = rss.peak / MB
    row.notes = "RSS after warm-up -> after the requests: " + "; ".join(growth)
    row.rounds = [*rounds, {"rss_before": before, "rss_after": after}]
    return [row]
