"""Do exports run in the API process (no Redis) hold up other requests?

`python -m bench.inprocess_exports [--todos 50000] [--exports 8] [--workers 1]`

Serves our app on PostgreSQL without Redis (exports then run on the API's event loop),
seeds the todos, measures GET /todos/<id> one request at a time while idle, then again
while N exports (from N client addresses, so that no pending-export limit or
deduplication turns them away) are queued and run, and prints both p95s. Issue 15 asks
for the p95 during exports within 2x of the idle one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.procs import Process, free_port, status_is, wait_ready
from bench.seed import recreate_database, run_service_command, seed_todos
from bench.servers import ROOT, VENV_PYTHON, clean_env

PG_BASE = "postgresql://postgres@127.0.0.1:5432"
DATABASE = "bench_inprocess_exports"


def p95(samples_ms: list[float]) -> float:
    return statistics.quantiles(samples_ms, n=20)[-1]


async def timed_gets(
    client: httpx.AsyncClient, path: str, *, until: asyncio.Event | None, count: int
) -> list[float]:
    """Latencies (ms) of GETs one after another: `count` of them, or until `until` is set."""
    samples: list[float] = []
    while (until is None and len(samples) < count) or (until is not None and not until.is_set()):
        started = time.perf_counter()
        response = await client.get(path)
        samples.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        await asyncio.sleep(0.005)  # a steady trickle, not a flood: latency, not throughput
    return samples


async def wait_finished(client: httpx.AsyncClient, status_url: str) -> None:
    while True:
        if (await client.get(status_url)).json()["status"] in ("complete", "failed"):
            return
        await asyncio.sleep(0.2)


async def run_exports(client: httpx.AsyncClient, exports: int, done: asyncio.Event) -> float:
    started = time.perf_counter()
    status_urls = []
    for number in range(exports):
        response = await client.post(
            "/export",
            json={"format": ("csv", "json")[number % 2]},
            headers={"X-Forwarded-For": f"10.9.0.{number + 1}"},
        )
        assert response.status_code == 202, response.text
        status_urls.append(response.json()["status_url"])
    for url in status_urls:
        await wait_finished(client, url)
    done.set()
    return time.perf_counter() - started


async def measure(port: int, todos: int, exports: int) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        path = f"/todos/{todos // 2}"
        await timed_gets(client, path, until=None, count=50)  # warm up
        idle = await timed_gets(client, path, until=None, count=400)
        done = asyncio.Event()
        # Its own connection, so the exports' POSTs and polls do not queue behind the GETs.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as other:
            busy, seconds = await asyncio.gather(
                timed_gets(client, path, until=done, count=0), run_exports(other, exports, done)
            )
    return {
        "idle_p95_ms": round(p95(idle), 1),
        "during_p95_ms": round(p95(busy), 1),
        "ratio": round(p95(busy) / p95(idle), 2),
        "idle_requests": len(idle),
        "during_requests": len(busy),
        "exports_seconds": round(seconds, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--todos", type=int, default=50_000)
    parser.add_argument("--exports", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1000, help="EXPORT_BATCH_SIZE")
    parser.add_argument("--concurrency", type=int, default=1, help="EXPORT_IN_PROCESS_CONCURRENCY")
    args = parser.parse_args()

    asyncio.run(recreate_database(f"{PG_BASE}/postgres", DATABASE))
    database_url = f"{PG_BASE.replace('postgresql://', 'postgresql+asyncpg://')}/{DATABASE}"
    run_service_command(VENV_PYTHON, ROOT, "migrate", clean_env(DATABASE_URL=database_url))
    asyncio.run(seed_todos(f"{PG_BASE}/{DATABASE}", args.todos))

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = Process(
            name="api",
            argv=[str(VENV_PYTHON), "-m", "service", "serve"],
            env=clean_env(
                DATABASE_URL=database_url,
                REDIS_URL="",
                HOST="127.0.0.1",
                PORT=str(port),
                WEB_CONCURRENCY=str(args.workers),
                EXPORT_IN_PROCESS_CONCURRENCY=str(args.concurrency),
                EXPORT_BATCH_SIZE=str(args.batch_size),
                TRUSTED_PROXY_HOPS="1",  # each export from its own client address
                LOG_LEVEL="WARNING",
                PROMETHEUS_MULTIPROC_DIR=str(Path(tmp) / "prometheus"),
            ),
            log_path=Path(tmp) / "api.log",
            cwd=ROOT,
        )
        server.start()
        try:
            wait_ready(server, status_is(port, "/readyz"))
            result = asyncio.run(measure(port, args.todos, args.exports))
        except Exception:
            print(server.log_tail(), file=sys.stderr)
            raise
        finally:
            server.stop()
    print(
        json.dumps(
            {
                "todos": args.todos,
                "exports": args.exports,
                "concurrency": args.concurrency,
                **result,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
