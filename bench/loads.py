"""Load generators: wrk (one thread, Lua `done()` for the numbers) and an asyncio client.

wrk prints its human summary too; only the `BENCH_JSON` line from bench/wrk/report.lua
is read. The asyncio client speaks plain HTTP/1.1 with `Connection: close` over raw
streams: it can hold 1,000 connections open and fire them at one moment, which wrk
cannot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import LOCALHOST

WRK = "/usr/bin/wrk"
WRK_DIR = Path(__file__).resolve().parent / "wrk"
WRK_TIMEOUT = "10s"  # wrk's 2 s default would turn a queued (slow, not failed) answer into an error
MARKER = "BENCH_JSON "


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float | None  # None: not one response in the run, so no latency to speak of
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    errors: dict[str, int]

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def run_wrk(
    port: int,
    path: str,
    *,
    seconds: float,
    connections: int = 64,
    script: str = "report.lua",
    script_args: tuple[str, ...] = (),
) -> WrkResult:
    argv = [
        WRK,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={WRK_TIMEOUT}",
        "--latency",
        "-s",
        str(WRK_DIR / script),
        f"http://{LOCALHOST}:{port}{path}",
    ]
    if script_args:
        argv += ["--", *script_args]
    completed = subprocess.run(  # noqa: S603 - fixed argv
        argv, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    for line in completed.stdout.splitlines():
        if line.startswith(MARKER):
            return _parse(json.loads(line[len(MARKER) :]))
    raise RuntimeError(
        f"wrk gave no {MARKER.strip()} line (exit {completed.returncode}):\n"
        f"{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}"
    )


def _parse(raw: dict[str, float]) -> WrkResult:
    seconds = raw["duration_us"] / 1e6
    answered = raw["requests"] > 0

    def ms(key: str) -> float | None:
        return raw[key] / 1000 if answered else None  # wrk reports 0 for an empty histogram

    return WrkResult(
        requests=int(raw["requests"]),
        seconds=seconds,
        rps=raw["requests"] / seconds if seconds else 0.0,
        p50_ms=ms("p50_us"),
        p90_ms=ms("p90_us"),
        p99_ms=ms("p99_us"),
        max_ms=ms("max_us"),
        errors={key: int(raw[key]) for key in ("connect", "read", "write", "status", "timeout")},
    )


def wrk_version() -> str:
    completed = subprocess.run(  # noqa: S603 - fixed argv
        [WRK, "-v"], capture_output=True, text=True, timeout=10, check=False
    )
    return (completed.stdout or completed.stderr).splitlines()[0].strip()


# --- the asyncio client -----------------------------------------------------------------


@dataclass
class Answer:
    status: int | None  # None: no HTTP answer (see `error`)
    error: str | None
    sent_at: float
    done_at: float


def _request_bytes(path: str, port: int) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {LOCALHOST}:{port}\r\n"
        "User-Agent: bench-burst\r\nConnection: close\r\n\r\n"
    ).encode()


def _status(response: bytes) -> int | None:
    parts = response.split(b" ", 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return None


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int | None:
    writer.write(request)
    await writer.drain()
    return _status(await reader.read())  # Connection: close: the answer ends at EOF


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


@dataclass
class BurstResult:
    clients: int
    ok: int
    failed: int
    wall_seconds: float  # from the common start to the last answer
    p50_ms: float | None
    p99_ms: float | None
    outcomes: dict[str, int] = field(default_factory=dict)


async def burst(port: int, path: str, clients: int, client_timeout: float) -> BurstResult:
    """`clients` connections opened first; then every request sent at the same moment."""
    loop = asyncio.get_running_loop()
    request = _request_bytes(path, port)
    go = asyncio.Event()
    all_connected = asyncio.Event()
    connected = 0

    async def client() -> Answer:
        nonlocal connected
        reader = writer = None
        connect_error = "connect"
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(LOCALHOST, port), client_timeout
            )
        except (OSError, TimeoutError) as error:
            connect_error = f"connect: {type(error).__name__}"
        finally:
            connected += 1
            if connected == clients:
                all_connected.set()
        await go.wait()
        sent_at = loop.time()
        if writer is None or reader is None:
            return Answer(None, connect_error, sent_at, sent_at)
        try:
            async with asyncio.timeout(client_timeout):
                status = await _exchange(reader, writer, request)
            return Answer(status, None if status else "no status line", sent_at, loop.time())
        except TimeoutError:
            return Answer(None, "timeout", sent_at, loop.time())
        except OSError as error:
            return Answer(None, type(error).__name__, sent_at, loop.time())
        finally:
            await _close(writer)

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    await all_connected.wait()  # bounded: each connect has its own timeout
    started = loop.time()
    go.set()
    answers = await asyncio.gather(*tasks)
    return summarize(answers, started, clients)


def summarize(answers: list[Answer], started: float, clients: int) -> BurstResult:
    outcomes = Counter(
        str(answer.status) if answer.status else (answer.error or "?") for answer in answers
    )
    succeeded = [answer for answer in answers if answer.status and 200 <= answer.status < 300]
    latencies = sorted((answer.done_at - answer.sent_at) * 1000 for answer in succeeded)
    last = max((answer.done_at for answer in succeeded), default=started)
    return BurstResult(
        clients=clients,
        ok=len(succeeded),
        failed=clients - len(succeeded),
        wall_seconds=last - started,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        outcomes=dict(outcomes),
    )


def percentile(sorted_values: list[float], percent: float) -> float | None:
    if not sorted_values:
        return None
    if len(sorted_values) == 1:
        return sorted_values[0]
    return statistics.quantiles(sorted_values, n=100, method="inclusive")[int(percent) - 1]


@dataclass
class HoldResult:
    clients: int
    ok: int = 0
    failed: int = 0
    unanswered: int = 0  # still waiting when the grace period after the load ran out
    outcomes: Counter[str] = field(default_factory=Counter)


class SlowHolders:
    """`clients` loops, each sending one slow request after the other until told to stop.

    Keeps that many slow requests open for the whole time a wrk run loads the server.
    """

    def __init__(self, port: int, path: str, clients: int, timeout: float) -> None:
        self.port = port
        self.request = _request_bytes(path, port)
        self.clients = clients
        self.timeout = timeout
        self.result = HoldResult(clients)
        self.first_sent = 0
        self.all_sent = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop()) for _ in range(self.clients)]

    async def _loop(self) -> None:
        first = True
        while not self._stop.is_set():
            await self._one(first)
            first = False

    def _first_sent(self) -> None:
        self.first_sent += 1
        if self.first_sent == self.clients:
            self.all_sent.set()

    async def _one(self, first: bool) -> None:
        writer = None
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(LOCALHOST, self.port)
                writer.write(self.request)
                await writer.drain()
                if first:
                    first = False
                    self._first_sent()
                status = _status(await reader.read())
            outcome = str(status) if status else "no status line"
        except TimeoutError:
            outcome = "timeout"
        except OSError as error:
            outcome = type(error).__name__
        finally:
            if first:  # the first request failed before it was sent: do not hold up the start
                self._first_sent()
            if writer is not None:
                await _close(writer)
        self.result.outcomes[outcome] += 1
        if outcome.isdigit() and 200 <= int(outcome) < 300:
            self.result.ok += 1
        else:
            self.result.failed += 1

    async def stop(self, grace_seconds: float) -> HoldResult:
        """No new requests; the ones in flight get `grace_seconds`, then count as unanswered."""
        self._stop.set()
        _done, pending = await asyncio.wait(self._tasks, timeout=grace_seconds)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self.result.unanswered = len(pending)
        return self.result
