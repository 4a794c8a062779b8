"""`python -m service`: help, version, the serve options, and the .env file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from service import __version__
from service.config import load_settings
from tests.conftest import TestServers
from tests.load import served
from tests.processes import free_port, run_command, service_env, wait_until_up


def run_cli(command: str, *options: str) -> subprocess.CompletedProcess[str]:
    return run_command(command, dict(os.environ), *options)


def test_help_describes_every_command() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command, words in [
        ("serve", "hypercorn"),
        ("migrate", "newest migration"),
        ("seed", "sample products"),
    ]:
        [line] = [line for line in result.stdout.splitlines() if line.strip().startswith(command)]
        assert words in line
    serve_help = run_cli("serve", "--help").stdout
    assert all(option in serve_help for option in ("--host", "--port", "--workers", "--reload"))


def test_version() -> None:
    result = run_cli("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"python -m service {__version__}")


async def test_serve_options_win_over_the_environment(tmp_path: Path) -> None:
    port = free_port()
    # PORT and WEB_CONCURRENCY in the environment say otherwise: the options decide.
    env = service_env(DATABASE_URL=TestServers.database_url, PORT="1", WEB_CONCURRENCY="3")
    command = [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "2"]
    with served(env, tmp_path / "serve.log", command=command) as server:
        await wait_until_up(f"http://127.0.0.1:{port}", server)  # type: ignore[arg-type]
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"http://127.0.0.1:{port}/products")).status_code == 200
    log = (tmp_path / "serve.log").read_text()
    assert f"starting hypercorn on http://127.0.0.1:{port} with 2 worker(s)" in log


def test_the_dotenv_file_is_read_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("SERVICE_NAME=from-dotenv\nLOG_LEVEL=debug\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SERVICE_NAME", raising=False)
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    settings = load_settings()
    assert (settings.service_name, settings.log_level) == ("from-dotenv", "DEBUG")

    monkeypatch.setenv("SERVICE_NAME", "from-environment")
    assert load_settings().service_name == "from-environment"
