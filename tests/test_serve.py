"""`python -m service ...` as a user runs it: a real hypercorn process on 127.0.0.1."""

from __future__ import annotations

import asyncio
import signal
import socket

import httpx

from tests.conftest import TestServers
from tests.processes import free_port, json_lines, run_command, service_env, wait_until_up


async def test_run_command_serves_the_samples_and_stops_gracefully(
    sqlite_env: dict[str, str], start_server
) -> None:
    assert run_command("migrate", sqlite_env).returncode == 0
    seeded = run_command("seed", sqlite_env)
    assert seeded.returncode == 0
    assert any(line["message"] == "seeded 10 sample products" for line in json_lines(seeded.stdout))

    process = start_server(sqlite_env)
    base_url = f"http://127.0.0.1:{sqlite_env['PORT']}"
    await wait_until_up(base_url, process)

    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        products = await http.get("/products", headers={"X-Request-ID": "served-1"})
        assert products.status_code == 200
        assert len(products.json()) == 10
        assert products.headers["x-request-id"] == "served-1"

        # A request in flight when SIGTERM arrives still gets its answer.
        in_flight = asyncio.create_task(http.get("/slow", params={"delay": 1}))
        await asyncio.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        slow = await in_flight
        assert slow.status_code == 200 and slow.json()["delay"] == 1

    output, _ = process.communicate(timeout=15)
    assert process.returncode == 0
    access = [line for line in json_lines(output) if line.get("logger") == "service.access"]
    served = next(line for line in access if line["request_id"] == "served-1")
    assert served["http.path"] == "/products" and served["status_code"] == 200


async def test_several_workers_on_postgres(start_server) -> None:
    env = service_env(
        DATABASE_URL=TestServers.database_url, PORT=str(free_port()), WEB_CONCURRENCY="2"
    )
    process = start_server(env)
    base_url = f"http://127.0.0.1:{env['PORT']}"
    await wait_until_up(base_url, process)

    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        answers = await asyncio.gather(*(http.get("/health") for _ in range(20)))
    assert {answer.json()["database"] for answer in answers} == {"connected"}

    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=20)
    assert process.returncode == 0


def test_a_bad_setting_stops_start_up_with_one_line(sqlite_env: dict[str, str]) -> None:
    result = run_command("serve", {**sqlite_env, "PORT": "abc"})

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("configuration error: PORT")


def test_a_taken_port_is_refused(sqlite_env: dict[str, str]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_command("serve", {**sqlite_env, "PORT": str(port)})

    assert result.returncode == 2
    assert "already in use" in result.stderr
