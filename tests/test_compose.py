"""compose.yml and .env.example, checked offline (no Docker engine here).

The Compose specification's JSON schema (the copy check-jsonschema ships) and our own rules:
pinned images, healthchecks, limits, no published database ports, settings for every variable.
The worker's and the API's healthcheck commands are run for real against local servers.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from service.__main__ import PROJECT_ROOT
from service.config import Settings
from tests.conftest import TestServers
from tests.processes import free_port, service_env, wait_until_up
from tests.test_exports_worker import start_arq_worker

COMPOSE_FILE = PROJECT_ROOT / "compose.yml"
ENV_EXAMPLE = PROJECT_ROOT / ".env.example"
OUR_SERVICES = ("api", "worker", "migrate")
ONE_SHOT_SERVICES = ("migrate",)
DATA_STORES = ("postgres", "redis")
# A tag that names a version: digits, not "latest" or a bare major ("17") alone.
PINNED_TAG = re.compile(r"^[^:@]+:v?\d+\.\d+(\.\d+)?[-\w.]*$")
# ${NAME}, ${NAME:-default} ...; `$${NAME}` is an escaped dollar, left for the container's shell.
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)(:?[-?+][^}]*)?\}")
# Variables the service reads that are not fields of Settings (the OpenTelemetry SDK's).
OTEL_VARIABLES = {
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
}


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def env_example() -> tuple[dict[str, str], set[str]]:
    """(variables set, variables only documented in a `# NAME=value` comment)."""
    assigned: dict[str, str] = {}
    documented: set[str] = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        if match := re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line):
            assigned[match[1]] = match[2]
        elif match := re.fullmatch(r"#\s*([A-Z][A-Z0-9_]*)=.*", line):
            documented.add(match[1])
    return assigned, documented


def interpolate(text: str, variables: dict[str, str]) -> str:
    """What compose does with `${NAME:-default}` given these variables."""
    return INTERPOLATION.sub(lambda match: variables.get(match[1], match[2][2:]), text)


def settings_variables() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        choices = getattr(alias, "choices", None)
        names.add(str(choices[0]) if choices else name.upper())
    return names


def bin_path(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def test_compose_file_matches_the_compose_specification() -> None:
    result = subprocess.run(
        [bin_path("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", COMPOSE_FILE],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = compose()
    broken["services"]["api"]["healthcheck"]["retries"] = "three"
    broken["services"]["api"]["depends_on"]["migrate"]["condition"] = "service_finished"
    path = tmp_path / "compose.yml"
    path.write_text(yaml.safe_dump(broken))
    result = subprocess.run(
        [bin_path("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", path],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    # Both broken properties are named (the schema reports them as not allowed).
    assert "'depends_on'" in result.stdout and "'healthcheck'" in result.stdout


def test_the_stack_has_every_service_the_issue_lists() -> None:
    names = set(services())
    assert {*OUR_SERVICES, *DATA_STORES, "proxy", "otel-collector", "grafana"} <= names
    assert {"prometheus", "jaeger", "loki", "pgadmin"} <= names
    assert services()["pgadmin"]["profiles"] == ["tools"]
    assert "image" in services()["postgres"] and services()["postgres"]["image"].startswith(
        "postgres:17"
    )


def test_every_image_is_pinned_to_a_version_tag() -> None:
    for name, service in services().items():
        image = service["image"]
        if name in OUR_SERVICES:
            assert image.startswith("quart-service:"), image
            assert service["build"]["context"] == "."
        else:
            assert PINNED_TAG.match(image), f"{name}: {image}"
            assert "latest" not in image


def test_every_long_running_service_has_a_healthcheck_restart_policy_and_limits() -> None:
    for name, service in services().items():
        limits = service["deploy"]["resources"]["limits"]
        assert float(limits["cpus"]) > 0, name
        assert re.fullmatch(r"\d+[MG]", limits["memory"]), name
        if name in ONE_SHOT_SERVICES:
            assert service["restart"].startswith("on-failure"), name
            continue
        assert service["restart"] == "unless-stopped", name
        check = service["healthcheck"]
        assert not check.get("disable"), name
        assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1, name
        assert check["interval"] and check["retries"] >= 1, name


def test_databases_publish_no_ports_and_stay_on_the_back_network() -> None:
    stack = services()
    for name in DATA_STORES:
        assert "ports" not in stack[name], name
        assert stack[name]["networks"] == ["back"], name
    assert stack["postgres"]["healthcheck"]["test"][1].startswith("pg_isready")
    assert any(volume.startswith("postgres-data:") for volume in stack["postgres"]["volumes"])
    assert stack["redis"]["healthcheck"]["test"][1:] == ["redis-cli", "ping"]
    assert set(stack["api"]["networks"]) == {"front", "back"}
    assert stack["proxy"]["networks"] == ["front"]
    for name in ("worker", "migrate", "otel-collector", "prometheus", "jaeger", "loki"):
        assert stack[name]["networks"] == ["back"], name
    assert stack["proxy"]["ports"] == ["${PROXY_PORT:-80}:80"]
    # The UIs are published on the loopback interface only.
    for name in ("grafana", "jaeger", "prometheus", "pgadmin"):
        assert all(port.startswith("127.0.0.1:") for port in stack[name]["ports"]), name


def test_start_order_waits_for_healthy_dependencies_and_the_migration() -> None:
    stack = services()
    for name in ("api", "worker"):
        depends = stack[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name
    assert stack["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert stack["proxy"]["depends_on"]["api"]["condition"] == "service_healthy"
    for name, service in stack.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in stack, f"{name} depends on unknown {dependency}"
            wanted = "service_completed_successfully" if dependency in ONE_SHOT_SERVICES else None
            assert rule["condition"] == (wanted or "service_healthy"), (name, dependency)


def test_our_three_roles_run_the_commands_the_image_provides() -> None:
    stack = services()
    assert stack["api"]["command"] == ["python", "-m", "service", "serve"]
    assert stack["worker"]["command"] == ["arq", "jobs.worker.WorkerSettings"]
    assert stack["migrate"]["command"] == ["python", "-m", "service", "migrate"]
    for name in OUR_SERVICES:
        assert stack[name]["read_only"] is True and stack[name]["tmpfs"] == ["/tmp"], name
        environment = stack[name]["environment"]
        assert environment["DATABASE_URL"].startswith("postgresql://"), name
        assert "@postgres:5432/" in environment["DATABASE_URL"]
        assert environment["REDIS_URL"] == "redis://redis:6379/0"
        assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
    assert int(stack["api"]["stop_grace_period"].rstrip("s")) > Settings().graceful_timeout


def test_mounted_files_exist_in_the_repository() -> None:
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (PROJECT_ROOT / source).exists(), f"{name}: {source}"


def test_every_interpolated_variable_has_a_default_and_is_listed_in_the_env_example() -> None:
    assigned, _ = env_example()
    used = INTERPOLATION.findall(COMPOSE_FILE.read_text())
    assert used, "compose.yml interpolates nothing?"
    for name, default in used:
        assert default.startswith(":-"), f"${{{name}}} has no default"
        assert name in assigned, f"{name} is not in .env.example"
        assert default[2:] == assigned[name], f"{name}: {default[2:]!r} != {assigned[name]!r}"


def test_the_env_example_lists_every_setting_and_nothing_unknown() -> None:
    assigned, documented = env_example()
    listed = set(assigned) | documented
    missing = settings_variables() - listed
    assert not missing, f"settings not in .env.example: {sorted(missing)}"
    compose_variables = {name for name, _ in INTERPOLATION.findall(COMPOSE_FILE.read_text())}
    unknown = listed - settings_variables() - OTEL_VARIABLES - compose_variables
    assert not unknown, f"in .env.example but read by nobody: {sorted(unknown)}"
    # What compose.yml sets itself is documented, not assigned (environment would win anyway).
    for name in services()["api"]["environment"]:
        assert name in documented and name not in assigned, name


def test_the_env_example_values_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assigned, _ = env_example()
    for name in settings_variables():
        monkeypatch.delenv(name, raising=False)
    for name, value in assigned.items():
        monkeypatch.setenv(name, value)
    database_url = interpolate(services()["api"]["environment"]["DATABASE_URL"], assigned)
    monkeypatch.setenv("DATABASE_URL", database_url)
    settings = Settings()
    assert settings.host == "0.0.0.0"
    assert settings.port == 8000
    assert settings.web_concurrency == 2
    assert settings.database_url.startswith("postgresql+asyncpg://app:app@postgres:5432/app")


async def test_the_worker_healthcheck_command_tells_a_live_worker_from_none() -> None:
    command = services()["worker"]["healthcheck"]["test"][1:]
    env = service_env(REDIS_URL=TestServers.redis_url, DATABASE_URL=TestServers.database_url)

    def check() -> int:
        return subprocess.run(
            [bin_path(command[0]), *command[1:]],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            timeout=30,
        ).returncode

    assert check() == 1  # no worker yet
    worker = start_arq_worker()
    try:
        deadline = time.monotonic() + 20
        while check() != 0:
            assert time.monotonic() < deadline, "the worker never looked healthy"
            assert worker.poll() is None, "the worker exited"
    finally:
        worker.terminate()
        worker.wait(timeout=30)


async def test_the_worker_starts_with_the_images_metrics_directory_missing(
    tmp_path: Path,
) -> None:
    """The image's PROMETHEUS_MULTIPROC_DIR lies on an empty tmpfs when the worker starts."""
    directory, port = tmp_path / "tmpfs" / "metrics", free_port()
    worker = start_arq_worker(
        PROMETHEUS_MULTIPROC_DIR=str(directory), WORKER_METRICS_PORT=str(port)
    )
    try:
        deadline = time.monotonic() + 20
        async with httpx.AsyncClient() as http:
            while True:
                assert worker.poll() is None, "the worker exited"
                assert time.monotonic() < deadline, "no /metrics from the worker"
                try:
                    scrape = await http.get(f"http://127.0.0.1:{port}/metrics")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
        assert scrape.status_code == 200
        assert "database_connection_pool" in scrape.text
        assert list(directory.glob("*.db"))
    finally:
        worker.terminate()
        worker.wait(timeout=30)


async def test_the_api_healthcheck_command_passes_against_a_running_server(
    start_server, sqlite_env: dict[str, str]
) -> None:
    port = sqlite_env["PORT"]
    command = services()["api"]["healthcheck"]["test"]
    assert command[:2] == ["CMD", "python"]
    probe = [sys.executable, *[part.replace(":8000/", f":{port}/") for part in command[2:]]]

    assert subprocess.run(probe, capture_output=True, timeout=30).returncode != 0  # nothing up
    assigned, _ = env_example()  # compose's host list: the probe asks by 127.0.0.1
    server = start_server({**sqlite_env, "ALLOWED_HOSTS": assigned["ALLOWED_HOSTS"]})
    await wait_until_up(f"http://127.0.0.1:{port}", server)
    assert subprocess.run(probe, capture_output=True, timeout=30).returncode == 0
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
