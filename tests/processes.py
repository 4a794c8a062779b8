"""Running the service as its own process, for tests that need a real server on 127.0.0.1.

Registered as a pytest plugin by conftest (`sqlite_env`, `start_server` fixtures).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.__main__ import PROJECT_ROOT


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def service_env(**values: str) -> dict[str, str]:
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("DATABASE", "APP_"))
    }
    # ALLOWED_HOSTS: the names the tests reach a server by (as tests/conftest.py's apps).
    env.update(
        {
            "HOST": "127.0.0.1",
            "LOG_LEVEL": "INFO",
            "REDIS_URL": "",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
        },
        **values,
    )
    return env


def run_command(
    command: str, env: dict[str, str], *options: str
) -> subprocess.CompletedProcess[str]:
    """`python -m service <command> <options>`, to its end, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "service", command, *options],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def sqlite_env(tmp_path: Path) -> dict[str, str]:
    return service_env(DATABASE_URL=f"sqlite:///{tmp_path / 'served.db'}", PORT=str(free_port()))


@pytest.fixture
def start_server() -> Iterator:
    started: list[subprocess.Popen[str]] = []

    def start(env: dict[str, str]) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "serve"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        if process.stdout:
            process.stdout.close()


async def wait_until_up(base_url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            assert process.poll() is None, "the server exited during start-up"
            try:
                if (await http.get(f"{base_url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                await asyncio.sleep(0.2)
    raise AssertionError("the server did not answer within 30 s")


def json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]
