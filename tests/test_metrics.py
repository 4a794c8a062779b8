"""Prometheus metrics: in this process, summed over hypercorn workers, and in the arq worker.

The test process is not in multiprocess mode: its default registry is served and its
counters add up over the whole session, so the in-process tests compare before/after.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, NamedTuple

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.parser import text_string_to_metric_families
from quart import Quart
from quart.testing import QuartClient
from sqlalchemy.ext.asyncio import AsyncSession

from service.__main__ import PROJECT_ROOT
from service.app import create_app
from service.metrics import MULTIPROC_ENV, is_multiprocess, render_metrics
from tests.conftest import TestServers, make_settings
from tests.factories import make_product
from tests.processes import free_port, service_env

PRODUCT_TEMPLATE = "/products/<product_id>"
# Ids no other label value could contain by chance (unlike 1, 2, 10 ...).
EXISTING_PRODUCT_ID = 731_905
UNKNOWN_PRODUCT_ID = 918_273_645
EXPECTED_BUCKETS = [
    "0.005",
    "0.01",
    "0.025",
    "0.05",
    "0.1",
    "0.25",
    "0.5",
    "1.0",
    "2.5",
    "5.0",
    "10.0",
    "+Inf",
]


class Sample(NamedTuple):
    name: str
    labels: dict[str, str]
    value: float


def parse(exposition: str) -> list[Sample]:
    return [
        Sample(sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    ]


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels`."""
    return sum(
        sample.value
        for sample in samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def matching(samples: list[Sample], name: str, **labels: str) -> list[Sample]:
    return [s for s in samples if s.name == name and labels.items() <= s.labels.items()]


async def scrape(client: QuartClient) -> list[Sample]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return parse(await response.get_data(as_text=True))


def requests_counted(samples: list[Sample], **labels: str) -> float:
    return total(samples, "http_requests_total", **labels)


# --- in this process ----------------------------------------------------------------------


async def test_requests_count_under_the_route_template_per_status(
    client: QuartClient, session: AsyncSession
) -> None:
    assert not is_multiprocess(), f"run the tests without {MULTIPROC_ENV}"
    await make_product(session, id=EXISTING_PRODUCT_ID)
    before = await scrape(client)

    statuses = [
        (await client.get(f"/products/{product_id}")).status_code
        for product_id in (EXISTING_PRODUCT_ID, UNKNOWN_PRODUCT_ID, EXISTING_PRODUCT_ID)
    ]
    after = await scrape(client)

    assert statuses == [200, 404, 200]
    for status, sent in (("200", 2), ("404", 1)):
        labels = {"method": "GET", "endpoint": PRODUCT_TEMPLATE, "status": status}
        assert requests_counted(after, **labels) - requests_counted(before, **labels) == sent
    label_values = {value for sample in after for value in sample.labels.values()}
    for product_id in (EXISTING_PRODUCT_ID, UNKNOWN_PRODUCT_ID):
        assert not [value for value in label_values if str(product_id) in value]


async def test_unknown_paths_all_count_under_one_label(client: QuartClient) -> None:
    before = await scrape(client)

    for number in range(1, 6):
        assert (await client.get(f"/nope/{number}")).status_code == 404
    after = await scrape(client)

    unmatched = {"method": "GET", "endpoint": "<unmatched>", "status": "404"}
    assert requests_counted(after, **unmatched) - requests_counted(before, **unmatched) == 5
    endpoints = {s.labels.get("endpoint", "") for s in after if s.name.startswith("http_")}
    assert not [endpoint for endpoint in endpoints if endpoint.startswith("/nope")]


async def test_the_metrics_endpoint_is_prometheus_text_and_not_counted(
    client: QuartClient,
) -> None:
    first = await client.get("/metrics")
    second = await client.get("/metrics")
    third = parse(await second.get_data(as_text=True))

    media_type, *params = (part.strip() for part in first.headers["Content-Type"].split(";"))
    parameters = dict(param.split("=", 1) for param in params)
    assert media_type == "text/plain"
    assert parameters.get("version") in ("0.0.4", "1.0.0")
    assert parameters.get("charset", "").lower() == "utf-8"
    # Nothing but /metrics was asked between the two scrapes, and it is not counted.
    assert requests_counted(third) == requests_counted(parse(await first.get_data(as_text=True)))
    assert not matching(third, "http_requests_total", endpoint="/metrics")
    assert not matching(third, "http_request_duration_seconds_count", endpoint="/metrics")
    for name in ("process_resident_memory_bytes", "process_open_fds"):
        found = matching(third, name)
        assert len(found) == 1 and found[0].value > 0, name


async def test_request_durations_have_buckets_from_5ms_to_10s(client: QuartClient) -> None:
    assert (await client.get("/healthz")).status_code == 200
    samples = await scrape(client)

    buckets = matching(samples, "http_request_duration_seconds_bucket", endpoint="/healthz")
    assert buckets
    assert {tuple(sorted(b.labels)) for b in buckets} == {
        ("endpoint", "environment", "le", "method", "status")
    }
    assert {b.labels["environment"] for b in buckets} == {"test"}
    one_series = [b for b in buckets if b.labels["method"] == "GET" and b.labels["status"] == "200"]
    assert [b.labels["le"] for b in one_series] == EXPECTED_BUCKETS
    counts = [b.value for b in one_series]
    assert counts == sorted(counts) and counts[-1] >= 1
    assert counts[-1] == total(
        samples, "http_request_duration_seconds_count", method="GET", endpoint="/healthz"
    )


async def test_database_queries_and_the_pool_are_reported(
    client: QuartClient, session: AsyncSession
) -> None:
    await make_product(session)
    before = await scrape(client)

    assert (await client.get("/products")).status_code == 200
    after = await scrape(client)

    product_reads = {"operation": "SELECT", "table": "products"}
    read = total(after, "database_queries_total", **product_reads)
    assert read - total(before, "database_queries_total", **product_reads) >= 1
    size = matching(after, "database_connection_pool", status="size")
    checked_out = matching(after, "database_connection_pool", status="checked_out")
    assert len(size) == 1 and len(checked_out) == 1
    assert size[0].value >= 1
    assert 0 <= checked_out[0].value <= size[0].value
    assert checked_out[0].value == 0  # no request is running now


async def test_a_scrape_sees_the_connections_checked_out_at_that_moment(
    app: Quart, client: QuartClient
) -> None:
    # The API publishes its pool gauges at each scrape (and once a second), not at every
    # checkout: a connection held right now must still show.
    async with app.extensions["database"].autocommit_engine.connect():
        held = matching(await scrape(client), "database_connection_pool", status="checked_out")
    released = matching(await scrape(client), "database_connection_pool", status="checked_out")
    # Compared with each other, not with 0 and 1: the gauge sums every pool of this test
    # process, and other tests' apps (and a connection an earlier test's cancelled
    # request left counted) may add to both.
    [held_value], [released_value] = [s.value for s in held], [s.value for s in released]
    assert held_value - released_value == 1


async def test_an_enqueued_export_is_counted(client: QuartClient) -> None:
    enqueued = {"job_type": "export_todos", "status": "enqueued"}
    before = total(await scrape(client), "background_jobs_total", **enqueued)

    response = await client.post("/export", json={"format": "csv"})

    assert response.status_code == 202
    assert total(await scrape(client), "background_jobs_total", **enqueued) - before == 1


async def wait_for_export(client: QuartClient, export_id: str, timeout: float = 30) -> None:
    body: dict = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = await (await client.get(f"/exports/{export_id}")).get_json()
        if body["status"] in ("complete", "failed"):
            break
        await asyncio.sleep(0.1)
    assert body.get("status") == "complete", f"export {export_id}: {body}"


async def test_an_in_process_export_counts_started_and_succeeded(clean_tables: None) -> None:
    app = create_app(make_settings(redis_url=None))
    async with app.test_app() as test_app:
        client = test_app.test_client()
        before = await scrape(client)

        response = await client.post("/export", json={"format": "json"})
        assert response.status_code == 202
        await wait_for_export(client, (await response.get_json())["job_id"])
    # Leaving the app waited for its background task, whose counts come after the status.
    after = parse(render_metrics()[0].decode())

    def delta(status: str) -> float:
        labels = {"job_type": "export_todos", "status": status}
        return total(after, "background_jobs_total", **labels) - total(
            before, "background_jobs_total", **labels
        )

    outcomes = {status: delta(status) for status in ("enqueued", "started", "succeeded", "failed")}
    assert outcomes == {"enqueued": 1, "started": 1, "succeeded": 1, "failed": 0}


async def test_promtool_finds_no_problem(client: QuartClient, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not on PATH (CI installs it)")
    await client.get("/products")
    await client.get("/nope/promtool")
    assert (await client.post("/export", json={})).status_code == 202
    exposition = tmp_path / "metrics.txt"
    exposition.write_bytes(await (await client.get("/metrics")).get_data())

    with exposition.open("rb") as stdin:
        checked = subprocess.run(
            [promtool, "check", "metrics"], stdin=stdin, capture_output=True, timeout=30
        )

    problems = (checked.stdout + checked.stderr).decode()
    assert checked.returncode == 0, problems
    assert problems.strip() == ""


# --- real processes -----------------------------------------------------------------------


def start(
    command: list[str], env: dict[str, str], log: IO[bytes], started: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, *command], cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    started.append(process)
    return process


async def stop(process: subprocess.Popen[bytes], timeout: float = 30) -> int:
    process.send_signal(signal.SIGTERM)
    return await asyncio.to_thread(process.wait, timeout)


async def get_metrics(
    url: str,
    process: subprocess.Popen[bytes],
    log: Path,
    until: Callable[[list[Sample]], bool] = lambda _samples: True,
) -> list[Sample]:
    """The samples at `url` once it answers with what `until` wants (within 30 s).

    A new connection each time, so that any of the server's processes may answer.
    """
    samples: list[Sample] = []
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(
        timeout=5, limits=httpx.Limits(max_keepalive_connections=0)
    ) as http:
        while time.monotonic() < deadline:
            assert process.poll() is None, f"it exited: {log.read_text()[-3000:]}"
            try:
                response = await http.get(url)
            except httpx.TransportError:
                await asyncio.sleep(0.2)
                continue
            assert response.status_code == 200
            samples = parse(response.text)
            if until(samples):
                return samples
            await asyncio.sleep(0.2)
    raise AssertionError(f"{url}: not ready within 30 s: {samples} {log.read_text()[-3000:]}")


def live_pids(samples: list[Sample]) -> set[str]:
    """The processes publishing their memory (multiprocess mode labels them by pid)."""
    memory = matching(samples, "process_resident_memory_bytes")
    return {sample.labels.get("pid", "no pid label") for sample in memory}


def requests_by_process(metrics_dir: Path, scratch: Path) -> dict[str, float]:
    """http_requests_total of each process, read from its own counter file."""
    counts = {}
    for path in metrics_dir.glob("counter_*.db"):
        pid = path.stem.rsplit("_", 1)[1]
        alone = scratch / pid
        alone.mkdir(parents=True)
        shutil.copy(path, alone)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(alone))
        counts[pid] = requests_counted(parse(generate_latest(registry).decode()))
    return counts


async def test_two_workers_add_up(tmp_path: Path, processes: list[subprocess.Popen[bytes]]) -> None:
    metrics_dir = tmp_path / "prometheus"
    port = free_port()
    env = service_env(
        DATABASE_URL=TestServers.database_url,
        PORT=str(port),
        WEB_CONCURRENCY="2",
        REDIS_URL="",
        **{MULTIPROC_ENV: str(metrics_dir)},
    )
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        server = start(["-m", "service", "serve"], env, log, processes)
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    # Waiting on /metrics, which is never counted, until both workers are up: counts start at 0.
    first = await get_metrics(metrics_url, server, log_path, lambda s: len(live_pids(s)) == 2)
    workers = live_pids(first)
    assert requests_counted(first) == 0

    paths = ["/healthz", "/products"] * 30  # N = 60
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        timeout=10,
        limits=httpx.Limits(max_keepalive_connections=0),  # a new connection per request
    ) as http:
        for batch in range(0, len(paths), 5):
            answers = await asyncio.gather(*(http.get(path) for path in paths[batch : batch + 5]))
            assert [answer.status_code for answer in answers] == [200] * 5

    # A request is counted just after its answer is sent: wait for the last ones.
    await get_metrics(metrics_url, server, log_path, lambda s: requests_counted(s) >= 60)
    by_process = requests_by_process(metrics_dir, tmp_path / "alone")
    assert set(by_process) == workers, "one worker answered every request"
    assert all(count > 0 for count in by_process.values())
    assert sum(by_process.values()) == 60
    for _ in range(8):
        samples = await get_metrics(metrics_url, server, log_path)
        assert requests_counted(samples, method="GET", endpoint="/healthz", status="200") == 30
        assert requests_counted(samples, method="GET", endpoint="/products", status="200") == 30
        assert requests_counted(samples) == 60  # the scrapes are not counted
        assert total(samples, "http_request_duration_seconds_count") == 60
        assert live_pids(samples) == workers
        pool_size = matching(samples, "database_connection_pool", status="size")
        assert [sample.value for sample in pool_size] == [2 * make_settings().db_pool_size]

    assert await stop(server) == 0, log_path.read_text()[-3000:]
    assert set(requests_by_process(metrics_dir, tmp_path / "after")) == workers  # counts stay


async def test_the_worker_serves_its_own_metrics(
    client: QuartClient, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != MULTIPROC_ENV}
    env.update(
        DATABASE_URL=TestServers.database_url,
        REDIS_URL=TestServers.redis_url,
        WORKER_METRICS_PORT=str(port),
        WORKER_HEALTH_CHECK_INTERVAL="1",
    )
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = start(["-m", "arq", "jobs.worker.WorkerSettings"], env, log, processes)

    response = await client.post("/export", json={"format": "csv"})
    assert response.status_code == 202
    await wait_for_export(client, (await response.get_json())["job_id"])
    # The job is counted a moment after it has marked the export complete.
    samples = await get_metrics(
        f"http://127.0.0.1:{port}/metrics",
        worker,
        log_path,
        lambda s: bool(matching(s, "background_jobs_total", status="succeeded")),
    )

    for status in ("started", "succeeded"):
        labels = {"job_type": "export_todos", "status": status}
        assert total(samples, "background_jobs_total", **labels) >= 1, status
    assert matching(samples, "database_queries_total")
    assert total(samples, "database_queries_total") >= 1
    assert await stop(worker) == 0, log_path.read_text()[-3000:]
