"""Scenarios with many slow requests held open: the burst (concurrency) and the mixed load.

Both use the asyncio client (bench/loads.py). A server that cannot take all the slow
requests keeps working through the abandoned ones after the clients gave up, so every
server is restarted after each of these runs: the next run starts without a backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

from bench.loads import SlowHolders, burst
from bench.procs import PeakRss
from bench.report import MB, Row, median
from bench.scenarios import (
    LABELS,
    SLOW_CLIENT_TIMEOUT,
    Run,
    load_once,
    ms,
    summary_row,
    with_ratios,
    wrk_round_record,
    wrk_scenarios,
)
from bench.servers import Server

BURST_DELAY = 1
BURST_GOAL_SECONDS = 2.5  # the issue: all 1,000 within 2.5 s on one worker process
MIXED_DELAY = 5


def _burst_once(run: Run, server: Server) -> dict:
    clients = run.options.burst_clients
    with PeakRss(server.process.pid) as rss:
        result = run.asyncio_runner(
            burst(server.port, f"/slow?delay={BURST_DELAY}", clients, SLOW_CLIENT_TIMEOUT)
        )
    return {
        "rps": result.ok / result.wall_seconds if result.wall_seconds > 0 else 0.0,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "ok": result.ok,
        "error_count": result.failed,
        "wall_seconds": result.wall_seconds,
        "outcomes": result.outcomes,
        "peak_rss_mb": rss.peak / MB,
    }


def _burst_notes(rounds: list[dict], clients: int, one_worker: bool) -> str:
    oks = ", ".join(str(r["ok"]) for r in rounds)
    wall = median([r["wall_seconds"] for r in rounds]) or 0.0
    notes = f"ok of {clients} per round: {oks}; last answer after {wall:.2f} s (median)"
    if one_worker:
        met = all(r["ok"] == clients and r["wall_seconds"] <= BURST_GOAL_SECONDS for r in rounds)
        notes += f"; goal all within {BURST_GOAL_SECONDS} s: {'met' if met else 'MISSED'}"
    failures: Counter[str] = Counter()
    for r in rounds:
        failures.update({key: n for key, n in r["outcomes"].items() if key != "200"})
    if failures:
        notes += f"; other outcomes (all rounds): {dict(failures)}"
    return notes


def run_concurrency(run: Run) -> list[Row]:
    """1,000 connections open, then 1,000 GET /slow?delay=1 at once; ours on one worker."""
    keys = ["ours-1w" if name == "ours" else name for name in run.options.servers]
    rounds: dict[str, list[dict]] = {key: [] for key in keys}
    for round_number in range(1, run.options.rounds + 1):
        for key in keys:
            server = run.pool.need(keys)[key]
            record = _burst_once(run, server)
            rounds[key].append(record)
            print(
                f"  concurrency round {round_number} {key}: {record['ok']} ok "
                f"in {record['wall_seconds']:.2f} s",
                flush=True,
            )
            run.pool.restart(key)
    clients = run.options.burst_clients
    title = f"concurrency: {clients} x GET /slow?delay={BURST_DELAY} at once"
    rows = [
        summary_row(
            title, LABELS[key], rounds[key], _burst_notes(rounds[key], clients, key == "ours-1w")
        )
        for key in keys
    ]
    return with_ratios(rows)  # ours on one worker against the twin as configured


async def _mixed_once(run: Run, server: Server) -> dict:
    scenario = wrk_scenarios(run.product_ids)["products_id"]
    holders = SlowHolders(
        server.port, f"/slow?delay={MIXED_DELAY}", run.options.mixed_clients, SLOW_CLIENT_TIMEOUT
    )
    holders.start()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(10):
            await holders.all_sent.wait()  # every slow request is in flight before wrk starts
    loop = asyncio.get_running_loop()
    result, peak = await loop.run_in_executor(None, load_once, run, server, scenario)
    held = await holders.stop(grace_seconds=MIXED_DELAY + 5)
    return wrk_round_record(result, peak) | {
        "slow_sent_before_load": holders.first_sent,
        "slow_ok": held.ok,
        "slow_failed": held.failed,
        "slow_unanswered": held.unanswered,
        "slow_outcomes": dict(held.outcomes),
    }


def _mixed_notes(run: Run, name: str, rounds: list[dict]) -> str:
    ok = sum(r["slow_ok"] for r in rounds)
    failed = sum(r["slow_failed"] for r in rounds)
    unanswered = sum(r["slow_unanswered"] for r in rounds)
    plain = run.row(wrk_scenarios(run.product_ids)["products_id"].title, LABELS[name])
    unloaded = f"{plain.p99_ms:.2f} ms" if plain and plain.p99_ms is not None else "not run"
    return (
        f"slow requests (all rounds): {ok} ok, {failed} failed, "
        f"{unanswered} unanswered at the end; unloaded p99 {unloaded}"
    )


def run_mixed(run: Run) -> list[Row]:
    """wrk on GET /products/<id> while 500 clients keep a GET /slow?delay=5 open each."""
    keys = run.options.servers
    rounds: dict[str, list[dict]] = {key: [] for key in keys}
    for round_number in range(1, run.options.rounds + 1):
        for key in keys:
            server = run.pool.need(keys)[key]
            record = run.asyncio_runner(_mixed_once(run, server))
            rounds[key].append(record)
            print(
                f"  mixed round {round_number} {key}: {record['rps']:,.0f} req/s, "
                f"p99 {ms(record['p99_ms'])}; slow ok {record['slow_ok']}, "
                f"failed {record['slow_failed']}, unanswered {record['slow_unanswered']}",
                flush=True,
            )
            run.pool.restart(key)
    title = f"mixed: GET /products/<id> + {run.options.mixed_clients} x /slow?delay={MIXED_DELAY}"
    return with_ratios(
        [
            summary_row(title, LABELS[key], rounds[key], _mixed_notes(run, key, rounds[key]))
            for key in keys
        ]
    )
