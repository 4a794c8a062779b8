"""The benchmark run: prepare the database, run the scenarios, print and write the table.

Started by `python3 bench/run.py`, which makes sure `.venv` exists and re-executes this
module with its interpreter (the seeding and the settings need our dependencies).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import signal
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import redis

from bench import seed
from bench.held import run_concurrency, run_mixed
from bench.loads import wrk_version
from bench.otlp_sink import OtlpSink
from bench.ours_only import run_export, run_leak, run_telemetry
from bench.report import Row, machine_facts, markdown_table, write_results
from bench.scenarios import Options, Run, run_wrk_scenario, wrk_scenarios
from bench.servers import (
    ROOT,
    TWIN_DIR,
    Context,
    Pool,
    Server,
    arq_worker,
    clean_env,
    ensure_twin_venv,
    has_metrics_switch,
    ours,
    twin,
)

WRK_KEYS = ("products_id", "products_list", "products_post", "articles", "items")
ALL_SCENARIOS = (*WRK_KEYS, "mixed", "concurrency", "telemetry", "export", "leak")
DEFAULT_SCENARIOS = tuple(name for name in ALL_SCENARIOS if name != "leak")
REDIS_CLAIM_KEY = "__bench_run_claim__"
# The telemetry scenario's third variant: one trace in ten recorded, as one would run a
# busy production service (the default, like the SDK's, records every trace).
SAMPLED_ENV = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
TMP_DIR = ROOT / "bench" / "results" / "tmp"
METRIC_EXPORT_INTERVAL_MS = 5000

METHOD = """\
- Load: Debian's wrk, one thread (`-t1`), {connections} connections, {warmup:g} s warm-up
  (discarded) then {duration:g} s measured, `--latency`, `--timeout 10s`; numbers come from
  a Lua `done()` (bench/wrk/report.lua). Errors = socket errors + responses >= 400.
- Rounds: {rounds}; inside a round the servers take turns scenario by scenario (ours,
  twin, ours, twin, ...). req/s, p50 and p99 are medians over the rounds, errors the total,
  peak RSS the largest.
- Peak RSS: sum of the RSS of the server's whole process tree (parent and workers,
  shared pages counted per process), from /proc every 100 ms during the measured run.
- Ratio: this row's req/s / the twin's req/s in the same scenario.
- ours: `python -m service serve`, WEB_CONCURRENCY={cpus}, default settings (tracing on
  without an exporter, Prometheus metrics on, JSON access logs to a file). twin:
  gunicorn with bench/peers/flask_sync/gunicorn.conf.py. Same PostgreSQL database.
- concurrency: {burst} connections opened first, then all requests sent at once
  (`Connection: close`, 30 s timeout each); req/s there = successes / time to the last
  answer. mixed: {mixed} clients each keep one `/slow?delay=5` open (re-sent when answered)
  during the wrk run. Both restart the server after each run (no backlog carried over).
- telemetry (ours only): "traces + metrics" = TRACING_ENABLED=true and OTLP/HTTP
  (protobuf) export of traces and metrics (every {metric_ms} ms) to a local sink that
  answers 200 (OTEL_LOGS_EXPORTER=none: log lines only to the file); "+ logs" = the same
  and every log line over OTLP too; "10% of traces" = traces + metrics with a ratio
  sampler (`parentbased_traceidratio`, 0.1; logs to the file only);
  "off" = TRACING_ENABLED=false and OTEL_SDK_DISABLED=true. Same wrk load as
  GET /products/<id>; the variants take turns within each round.
- export (ours only): ours with REDIS_URL (an empty Redis db claimed for the run, flushed
  after) and one arq worker; the todos table is reloaded with exactly N rows first; time
  from POST /export to the poll (every 50 ms) that sees `complete`; the worker's RSS.
- Everything runs on this machine: the load generator and the servers share its cores.
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 bench/run.py", description="Benchmark our service against the Flask twin."
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--only", default="", help=f"comma-separated scenarios of: {', '.join(ALL_SCENARIOS)}"
    )
    parser.add_argument("--servers", default="ours,twin", help="ours,twin | ours | twin")
    parser.add_argument("--skip-seed", action="store_true", help="reuse the seeded database")
    parser.add_argument("--leak", action="store_true", help="add the (long) leak scenario")
    parser.add_argument("--export-rows", type=int, default=100_000)
    parser.add_argument("--leak-requests", type=int, default=200_000)
    parser.add_argument("--burst-clients", type=int, default=1000)
    parser.add_argument("--mixed-clients", type=int, default=500)
    parser.add_argument("--database", default="bench")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    args = parser.parse_args(argv)
    args.scenarios = _selected(args, parser)
    args.server_keys = [name.strip() for name in args.servers.split(",") if name.strip()]
    if not args.server_keys or set(args.server_keys) - {"ours", "twin"}:
        parser.error("--servers takes ours, twin or both")
    return args


def _selected(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[str]:
    wanted = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(wanted) - set(ALL_SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}; known: {', '.join(ALL_SCENARIOS)}")
    chosen = set(wanted or DEFAULT_SCENARIOS) | ({"leak"} if args.leak else set())
    return [name for name in ALL_SCENARIOS if name in chosen]  # the fixed, server-saving order


def claim_redis_db(base_url: str) -> redis.Redis:
    """An empty Redis db (15 down to 1), marked like the test suite marks its own."""
    token = uuid.uuid4().hex
    for db in range(15, 0, -1):
        client = redis.Redis.from_url(f"{base_url}/{db}", socket_connect_timeout=3)
        if client.set(REDIS_CLAIM_KEY, token, nx=True, ex=6 * 3600) and client.dbsize() == 1:
            return client
        if client.get(REDIS_CLAIM_KEY) == token.encode():
            client.delete(REDIS_CLAIM_KEY)
        client.close()
    raise SystemExit("every Redis db 1-15 is in use")


def prepare_database(args: argparse.Namespace, run_async: Any) -> list[int]:
    """Recreate, migrate and seed (or, with --skip-seed, only migrate); the product ids."""
    admin = f"{args.pg}/postgres"
    dsn = f"{args.pg}/{args.database}"
    env = clean_env(DATABASE_URL=dsn)
    started = time.monotonic()
    if args.skip_seed:
        if not run_async(seed.database_exists(admin, args.database)):
            raise SystemExit(f"--skip-seed: database {args.database!r} does not exist yet")
        seed.run_service_command(Path(sys.executable), ROOT, "migrate", env)
    else:
        run_async(seed.recreate_database(admin, args.database))
        seed.run_service_command(Path(sys.executable), ROOT, "migrate", env)
        seed.run_service_command(Path(sys.executable), ROOT, "seed", env)  # the 10 products
        counts = run_async(seed.seed_bulk(dsn))
        print(f"seeded {counts} in {time.monotonic() - started:.1f} s", flush=True)
    ids = run_async(seed.product_ids(dsn))[:10]
    if not ids:
        raise SystemExit("no products in the benchmark database")
    return ids


def factories(context: Context, extras: dict[str, str]) -> dict[str, Callable[[Pool], Server]]:
    """How to start each server the scenarios name; the worker joins the running API."""
    cpus = context.cpu_count
    off_env = {"TRACING_ENABLED": "false", "OTEL_SDK_DISABLED": "true"}
    if switch := has_metrics_switch():
        off_env[switch] = "false"
    on_env = {
        "TRACING_ENABLED": "true",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{extras.get('sink_port', '0')}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        # The SDK's 60 s default would export no metrics at all within a 13 s run.
        "OTEL_METRIC_EXPORT_INTERVAL": str(METRIC_EXPORT_INTERVAL_MS),
    }

    return {
        "ours": lambda _pool: ours(context, "ours", workers=cpus),
        "twin": lambda _pool: twin(context),
        "ours-1w": lambda _pool: ours(context, "ours-1w", workers=1),
        "ours-otel-on": lambda _pool: ours(context, "ours-otel-on", workers=cpus, extra_env=on_env),
        "ours-otel-traces-metrics": lambda _pool: ours(
            context,
            "ours-otel-traces-metrics",
            workers=cpus,
            extra_env={**on_env, "OTEL_LOGS_EXPORTER": "none"},
        ),
        "ours-otel-sampled": lambda _pool: ours(
            context,
            "ours-otel-sampled",
            workers=cpus,
            extra_env={**on_env, "OTEL_LOGS_EXPORTER": "none", **SAMPLED_ENV},
        ),
        "ours-otel-off": lambda _pool: ours(
            context, "ours-otel-off", workers=cpus, extra_env=off_env
        ),
        "ours-redis": lambda _pool: ours(
            context, "ours-redis", workers=cpus, extra_env={"REDIS_URL": extras["redis_url"]}
        ),
        "worker": lambda pool: arq_worker(context, pool.running["ours-redis"]),
    }


def _terminate_on_sigterm() -> None:
    # SystemExit unwinds through the finally blocks: every child is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def run_scenarios(args: argparse.Namespace, stack: ExitStack, runner: asyncio.Runner) -> list:
    context = Context(args.pg, args.database, TMP_DIR, os.cpu_count() or 1)
    run_async = runner.run
    product_ids = prepare_database(args, run_async)
    extras: dict[str, str] = {}
    sink = None
    if "telemetry" in args.scenarios:
        sink = stack.enter_context(OtlpSink())
        extras["sink_port"] = str(sink.port)
    if "export" in args.scenarios:
        client = claim_redis_db(args.redis)
        stack.callback(client.close)
        stack.callback(client.flushdb)  # runs after the servers stopped (LIFO)
        extras["redis_url"] = f"{args.redis}/{client.connection_pool.connection_kwargs['db']}"
    pool = Pool(factories(context, extras))
    # Registered last, so it runs first: servers stop before the sink and Redis go away.
    stack.callback(pool.stop_all)
    options = Options(
        rounds=args.rounds,
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
        servers=args.server_keys,
        burst_clients=args.burst_clients,
        mixed_clients=args.mixed_clients,
        export_rows=args.export_rows,
        leak_requests=args.leak_requests,
    )
    run = Run(options, pool, context.asyncpg_url, product_ids, run_async)
    wrk_table = wrk_scenarios(product_ids)
    switch = has_metrics_switch()
    metrics_note = (
        f"{switch}=false turns Prometheus metrics off"
        if switch
        else "Prometheus metrics stay on in both: service/config.py has no switch for them"
    )
    for name in args.scenarios:
        print(f"\n== {name}", flush=True)
        try:
            if name in WRK_KEYS:
                rows = run_wrk_scenario(run, name, wrk_table[name])
            elif name == "mixed":
                rows = run_mixed(run)
            elif name == "concurrency":
                rows = run_concurrency(run)
            elif name == "telemetry":
                assert sink is not None
                rows = run_telemetry(run, sink, metrics_note)
            elif name == "export":
                rows = run_export(run)
            else:
                rows = run_leak(run)
        except Exception as error:
            # One broken scenario (a server that does not start) must not lose the others.
            print(f"  ! {name} failed: {error}", flush=True)
            traceback.print_exc()
            rows = [Row(scenario=name, server="-", notes=f"FAILED: {str(error).splitlines()[0]}")]
            pool.need([])  # whatever state the servers are in, the next scenario starts afresh
        run.rows.extend(rows)
    return run.rows


def _event_loop_factory() -> Any:
    try:
        import uvloop  # the client side of the burst needs little CPU on uvloop

        return uvloop.new_event_loop
    except ImportError:
        return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = os.environ.get("BENCH_COMMAND") or shlex.join(
        ["python3", "bench/run.py", *sys.argv[1:]]
    )
    _terminate_on_sigterm()
    started = time.monotonic()
    if "twin" in args.server_keys:
        if not (TWIN_DIR / "app.py").exists():
            raise SystemExit(f"the twin is missing ({TWIN_DIR}/app.py); try --servers ours")
        ensure_twin_venv()
    shutil.rmtree(TMP_DIR, ignore_errors=True)  # logs of this run only
    TMP_DIR.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    with asyncio.Runner(loop_factory=_event_loop_factory()) as runner, ExitStack() as stack:
        # PostgreSQL's max_connections is shared with whatever else runs on this machine.
        connections_before = runner.run(seed.connections_in_use(f"{args.pg}/postgres"))
        rows = run_scenarios(args, stack, runner)
        facts_extra = runner.run(seed.database_facts(f"{args.pg}/{args.database}"))
    wall = time.monotonic() - started
    facts = machine_facts(
        ROOT,
        command,
        {
            "postgresql": facts_extra["server_version"],
            "postgresql max_connections": facts_extra["max_connections"],
            "postgresql connections at start, by database": connections_before,
            "wrk": wrk_version(),
            "ours WEB_CONCURRENCY": str(os.cpu_count()),
            "scenarios": ",".join(args.scenarios),
            "servers": ",".join(args.server_keys),
        },
    )
    method = METHOD.format(
        connections=args.connections,
        warmup=args.warmup,
        duration=args.duration,
        rounds=args.rounds,
        cpus=os.cpu_count(),
        burst=args.burst_clients,
        mixed=args.mixed_clients,
        metric_ms=METRIC_EXPORT_INTERVAL_MS,
    )
    json_path, md_path = write_results(facts, rows, method, wall)
    print("\n" + markdown_table(rows))
    print(
        f"\nwall time {wall / 60:.1f} min; written {json_path.relative_to(ROOT)}, "
        f"{md_path.relative_to(ROOT)}; server logs in {TMP_DIR.relative_to(ROOT)}/"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
