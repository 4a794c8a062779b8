"""How each server under test is started: our service, the Flask twin, the arq worker.

The environment each child gets is the harness's own minus every variable our service
or the twin reads, plus exactly what the scenario sets: a stray `WEB_CONCURRENCY` or
`OTEL_*` in the caller's shell must not change what is measured.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import LOCALHOST, Process, free_port, http_get, wait_ready
from service.config import Settings

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
TWIN_DIR = ROOT / "bench" / "peers" / "flask_sync"
TWIN_VENV = ROOT / "bench" / ".venv-twin"
TWIN_STAMP = TWIN_VENV / ".bench-requirements.sha256"
# The twin's /healthz checks no dependency; one product read proves the database works too.
TWIN_READY_PATH = "/products?limit=1"


def _our_variables() -> set[str]:
    names = {name.upper() for name in Settings.model_fields}
    names |= {"DATABASE_URL", "APP_DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR"}
    return names


def clean_env(**values: str) -> dict[str, str]:
    """This process's environment without settings of ours, OTel's, gunicorn's; plus `values`."""
    dropped = _our_variables() | {"BIND", "GUNICORN_CMD_ARGS", "PYTHONPATH", "VIRTUAL_ENV"}
    env = {
        key: value
        for key, value in os.environ.items()
        if key.upper() not in dropped and not key.upper().startswith("OTEL_")
    }
    env.update(values)
    return env


def has_metrics_switch() -> str | None:
    """The name of a setting that turns Prometheus metrics off, if service/config.py has one."""
    for name in Settings.model_fields:
        if "metric" in name and name.endswith("enabled"):
            return name.upper()
    return None


def ensure_twin_venv() -> None:
    """bench/.venv-twin with the twin's requirements; rebuilt only when they change."""
    requirements = TWIN_DIR / "requirements.txt"
    if not requirements.exists():
        raise SystemExit(
            f"the twin is not there: {requirements} is missing (use --servers ours to skip it)"
        )
    base_python = Path(sys.executable).resolve()  # the interpreter behind .venv, not .venv's
    wanted = hashlib.sha256(requirements.read_bytes() + str(base_python).encode()).hexdigest()
    gunicorn = TWIN_VENV / "bin" / "gunicorn"
    if gunicorn.exists() and TWIN_STAMP.exists() and TWIN_STAMP.read_text().strip() == wanted:
        return
    print(f"installing the twin's requirements into {TWIN_VENV.relative_to(ROOT)} ...", flush=True)
    subprocess.run([str(base_python), "-m", "venv", str(TWIN_VENV)], check=True)  # noqa: S603
    subprocess.run(  # noqa: S603 - fixed argv
        [str(TWIN_VENV / "bin" / "pip"), "install", "-q", "-r", str(requirements)], check=True
    )
    TWIN_STAMP.write_text(wanted + "\n")


@dataclass
class Server:
    """A server under test: the process, the port it answers on, how to tell it is ready."""

    label: str  # what the table calls it
    process: Process
    port: int
    ready: Callable[[], bool]
    notes: dict[str, str] = field(default_factory=dict)

    def start(self, deadline_seconds: float = 60.0) -> float:
        self.process.start()
        return wait_ready(self.process, self.ready, deadline_seconds)


@dataclass
class Context:
    """What every server of one run shares."""

    pg_base: str  # postgresql://postgres@127.0.0.1:5432
    database: str
    tmp: Path
    cpu_count: int

    @property
    def asyncpg_url(self) -> str:
        return f"{self.pg_base}/{self.database}"


def _ok(port: int, path: str) -> Callable[[], bool]:
    return lambda: http_get(port, path, timeout=2.0)[0] == 200


def ours(
    context: Context, name: str, *, workers: int, extra_env: dict[str, str] | None = None
) -> Server:
    """`python -m service serve` with defaults for everything the scenario does not set."""
    port = free_port()
    env = clean_env(
        DATABASE_URL=context.asyncpg_url,
        HOST=LOCALHOST,
        PORT=str(port),
        WEB_CONCURRENCY=str(workers),
        # Our own metrics directory, so no run leaves a temporary directory behind.
        PROMETHEUS_MULTIPROC_DIR=str(context.tmp / f"{name}-prometheus"),
        **(extra_env or {}),
    )
    process = Process(
        name=name,
        argv=[str(VENV_PYTHON), "-m", "service", "serve"],
        env=env,
        log_path=context.tmp / f"{name}.log",
        cwd=ROOT,
    )
    # /readyz checks the database (and Redis when set): the scenarios need both.
    return Server(label=name, process=process, port=port, ready=_ok(port, "/readyz"))


def twin(context: Context, name: str = "twin") -> Server:
    port = free_port()
    env = clean_env(
        BIND=f"{LOCALHOST}:{port}",
        DATABASE_URL=f"{context.pg_base.replace('postgresql://', 'postgresql+psycopg://')}"
        f"/{context.database}",
    )
    process = Process(
        name=name,
        argv=[
            str(TWIN_VENV / "bin" / "gunicorn"),
            "-c",
            str(TWIN_DIR / "gunicorn.conf.py"),
            "--chdir",
            str(TWIN_DIR),
            "app:app",
        ],
        env=env,
        log_path=context.tmp / f"{name}.log",
        cwd=ROOT,
    )
    return Server(label=name, process=process, port=port, ready=_ok(port, TWIN_READY_PATH))


def arq_worker(context: Context, api: Server, name: str = "worker") -> Server:
    """The arq worker with the API's settings; ready once the API sees its health-check key."""
    env = dict(api.process.env)
    env.pop("PORT", None)
    env.update(
        # Its own metrics port: the default 9101 may belong to someone else's worker.
        WORKER_METRICS_PORT=str(free_port()),
        PROMETHEUS_MULTIPROC_DIR=str(context.tmp / f"{name}-prometheus"),
    )
    process = Process(
        name=name,
        argv=[str(ROOT / ".venv" / "bin" / "arq"), "jobs.worker.WorkerSettings"],
        env=env,
        log_path=context.tmp / f"{name}.log",
        cwd=ROOT,
    )
    return Server(
        label=name, process=process, port=api.port, ready=_ok(api.port, "/healthz/background")
    )


class Pool:
    """The servers that are up, by key: started on first need, stopped when no longer needed.

    Scenarios that share servers (the wrk ones) reuse them; a scenario that leaves a
    server with a backlog of abandoned requests (slow clients) restarts it.
    """

    def __init__(self, factories: dict[str, Callable[[Pool], Server]]) -> None:
        self.factories = factories
        self.running: dict[str, Server] = {}

    def need(self, keys: list[str]) -> dict[str, Server]:
        for key in [key for key in self.running if key not in keys]:
            self.stop(key)
        for key in keys:
            if key not in self.running:
                self.start(key)
        return {key: self.running[key] for key in keys}

    def start(self, key: str) -> Server:
        server = self.factories[key](self)
        self.running[key] = server  # registered first: a failed start is still stopped
        seconds = server.start()
        print(f"  started {server.label} (pid {server.process.pid}) in {seconds:.1f} s", flush=True)
        return server

    def stop(self, key: str) -> None:
        server = self.running.pop(key, None)
        if server is not None:
            server.process.stop()

    def restart(self, key: str) -> Server:
        self.stop(key)
        return self.start(key)

    def stop_all(self) -> None:
        # Dependents (the worker) were started last: stop them first.
        for key in reversed(list(self.running)):
            self.stop(key)
