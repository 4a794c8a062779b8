"""SIGTERM to `python -m service serve` under load, with one and with two hypercorn workers:
every request already sent gets its answer, and the process exits within GRACEFUL_TIMEOUT.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import TestServers
from tests.load import Outcome, log_problems, request_once, run_clients, served, wait_for_exit
from tests.processes import free_port, service_env, wait_until_up

GRACEFUL_TIMEOUT_SECONDS = 6.0
# Requests in flight at the signal, each on its own connection (the kernel spreads them over
# the workers), ending at different times. Exactly one is the longest: whichever worker does
# not hold it finishes first, which is what broke hypercorn's multi-worker shutdown.
LONG_REQUEST_SECONDS = [0.5 + index / 30 for index in range(30)] + [3.0]


def shutdown_env(workers: int, graceful_timeout: float) -> dict[str, str]:
    return service_env(
        DATABASE_URL=TestServers.database_url,
        PORT=str(free_port()),
        WEB_CONCURRENCY=str(workers),
        GRACEFUL_TIMEOUT=str(graceful_timeout),
        LOG_LEVEL="WARNING",
    )


async def long_request(base_url: str, seconds: float) -> Outcome:
    async with httpx.AsyncClient(base_url=base_url, timeout=seconds + 30) as http:
        return await request_once(http, "GET", f"/slow?delay={seconds}")


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_under_load_answers_every_request_in_flight(
    workers: int, tmp_path: Path
) -> None:
    env = shutdown_env(workers, GRACEFUL_TIMEOUT_SECONDS)
    base_url = f"http://127.0.0.1:{env['PORT']}"
    log_path = tmp_path / "api.log"
    with served(env, log_path) as process:
        await wait_until_up(base_url, process)  # type: ignore[arg-type]

        def plan(number: int) -> tuple[str, str, None]:
            # Database reads and short waits, so some are always in the middle of something.
            return (
                ("GET", "/products?limit=5", None)
                if number % 2
                else ("GET", "/slow?delay=0.2", None)
            )

        stop_sending = asyncio.Event()
        steady = asyncio.create_task(
            run_clients(base_url, plan, clients=10, stop=stop_sending, timeout=30)
        )
        await asyncio.sleep(1.0)  # warmed up: connections open, the pools filled
        long = [
            asyncio.create_task(long_request(base_url, seconds)) for seconds in LONG_REQUEST_SECONDS
        ]
        await asyncio.sleep(0.3)
        # The clients send nothing new from here on (as behind a load balancer that has
        # already taken this instance out); what they sent must all be answered.
        stop_sending.set()
        await asyncio.sleep(0.05)
        signalled_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        exit_seconds = await wait_for_exit(process, GRACEFUL_TIMEOUT_SECONDS + 10)
        outcomes = await asyncio.wait_for(steady, timeout=30)
        outcomes += await asyncio.wait_for(asyncio.gather(*long), timeout=30)

    in_flight = [o for o in outcomes if o.finished > signalled_at]
    failed = [o for o in outcomes if not o.ok]
    assert failed == [], failed[:10]
    assert len(in_flight) >= len(LONG_REQUEST_SECONDS), "the signal came after the answers"
    assert exit_seconds is not None, "still running after the grace period"
    assert exit_seconds < GRACEFUL_TIMEOUT_SECONDS
    assert process.returncode == 0
    assert log_problems(log_path) == []
    print(
        f"\n{workers} worker(s): {len(outcomes)} requests, {len(in_flight)} in flight at "
        f"SIGTERM, all answered; exited after {exit_seconds:.2f}s"
    )


async def test_a_request_longer_than_the_grace_period_does_not_hold_up_the_exit(
    tmp_path: Path,
) -> None:
    graceful_timeout = 1.0
    env = shutdown_env(2, graceful_timeout)
    base_url = f"http://127.0.0.1:{env['PORT']}"
    with served(env, tmp_path / "api.log") as process:
        await wait_until_up(base_url, process)  # type: ignore[arg-type]
        stuck = asyncio.create_task(long_request(base_url, 20))
        await asyncio.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        exit_seconds = await wait_for_exit(process, 20)
        outcome = await asyncio.wait_for(stuck, timeout=10)

    assert exit_seconds is not None
    # The grace period, then the worker's own shutdown; never the request's 20 s.
    assert exit_seconds < graceful_timeout + 3, exit_seconds
    # Cut off at the end of the grace period: hypercorn answers 500 to the request it cancels
    # (or drops the connection once the response has begun); what matters is that it ends.
    assert outcome.status in (0, 500) and outcome.seconds < graceful_timeout + 3, outcome
    print(f"\nexited {exit_seconds:.2f}s after SIGTERM with a 20 s request in flight")
