"""Steady load against a served process, and the process itself, for the outage and shutdown
tests: every request is recorded with its start, end and status, so a test can say when
errors happened and how long any request took.

The served process writes its log to a file, not a pipe: a test that sends thousands of
requests would fill a pipe nobody reads, and the server would block on its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from service.__main__ import PROJECT_ROOT

# httpx logs every request at INFO: thousands of lines that cost the load client CPU.
logging.getLogger("httpx").setLevel(logging.WARNING)


@dataclass(frozen=True)
class Outcome:
    method: str
    path: str
    started: float  # time.monotonic()
    finished: float
    status: int  # 0: no HTTP answer at all (connection error or the client's timeout)
    message: str = ""  # the JSON error's message, or the transport error's type

    @property
    def seconds(self) -> float:
        return self.finished - self.started

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


# (method, path, JSON body or None) for the n-th request of a client.
RequestPlan = Callable[[int], tuple[str, str, dict[str, Any] | None]]


def error_message(response: httpx.Response) -> str:
    """The message of our JSON error shape; "" when the body is not that shape."""
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return ""


async def request_once(
    http: httpx.AsyncClient,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Outcome:
    started = time.monotonic()
    try:
        response = await http.request(method, path, json=body, headers=headers)
    except httpx.HTTPError as error:
        return Outcome(method, path, started, time.monotonic(), 0, type(error).__name__)
    finished = time.monotonic()
    message = "" if response.is_success else error_message(response)
    return Outcome(method, path, started, finished, response.status_code, message)


async def raw_request(port: int, method: str, path: str, timeout: float) -> Outcome:
    """One request on a connection of its own, written by hand: for a burst of hundreds at
    once, where httpx would cost the test process (on the same two cores as the server)
    several times the server's own CPU, and so slow down what is measured."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                writer.write(head.encode() + b"\r\n")
                response = await reader.read()  # until the server closes the connection
            finally:
                writer.close()
    except (OSError, TimeoutError) as error:
        return Outcome(method, path, started, time.monotonic(), 0, type(error).__name__)
    finished = time.monotonic()
    status_line, _, body = response.partition(b"\r\n\r\n")
    parts = status_line.split(b" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    message = ""
    if not 200 <= status < 300:
        try:
            message = str(json.loads(body)["error"]["message"])
        except (ValueError, KeyError, TypeError):
            message = ""
    return Outcome(method, path, started, finished, status, message)


async def keep_requesting(
    http: httpx.AsyncClient,
    plan: RequestPlan,
    stop: asyncio.Event,
    outcomes: list[Outcome],
    until: float,
) -> None:
    """One client: a request, its answer, the next, until `stop` is set (or `until`, a
    time.monotonic(), passes: a test that fails half-way leaves no load running)."""
    number = 0
    while not stop.is_set() and time.monotonic() < until:
        method, path, body = plan(number)
        outcomes.append(await request_once(http, method, path, body))
        number += 1


async def run_clients(
    base_url: str,
    plan: RequestPlan,
    clients: int,
    stop: asyncio.Event,
    timeout: float,
    at_most_seconds: float = 60,
) -> list[Outcome]:
    """`clients` clients, each on its own connection, until `stop` is set."""
    outcomes: list[Outcome] = []
    until = time.monotonic() + at_most_seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout, limits=limits) as http:
        await asyncio.gather(
            *(keep_requesting(http, plan, stop, outcomes, until) for _ in range(clients))
        )
    return outcomes


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@contextmanager
def served(
    env: dict[str, str], log_path: Path, command: list[str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m service serve` (or `command`) with its output in `log_path`; killed, with
    every process it started, if still running when the block ends."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command or [sys.executable, "-m", "service", "serve"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the teardown kills its workers too
        )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):  # the group is gone already
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextmanager
def served_and_up(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`served`, once its /healthz on 127.0.0.1:PORT answers (for tests without a loop)."""
    with served(env, log_path) as process:
        url = f"http://127.0.0.1:{env['PORT']}/healthz"
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if httpx.get(url).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        yield process


async def wait_for_exit(process: subprocess.Popen[bytes], timeout: float) -> float | None:
    """Seconds until the process exited, or None when it is still running after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    return None


def log_problems(log_path: Path) -> list[str]:
    """Log lines at ERROR or above, and any traceback, from a served process's log."""
    problems = []
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            if "Traceback" in line or "Error" in line:
                problems.append(line)
            continue
        if not isinstance(record, dict):
            continue
        if record.get("level") in ("ERROR", "CRITICAL") or "Traceback" in json.dumps(record):
            problems.append(line)
    return problems


def pool_gauge(metrics_text: str, status: str) -> float:
    """`database_connection_pool{status=...}` from a /metrics scrape."""
    prefix = f'database_connection_pool{{status="{status}"}} '
    for line in metrics_text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    raise AssertionError(f"no {prefix.strip()} in the scrape")
