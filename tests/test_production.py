"""What production exposes: no test endpoints, no API docs, no /metrics on the public port.

With APP_ENV=production, /error and /slow (5xx and ERROR logs on demand), the docs and
/openapi.json are not routed unless FAULT_ENDPOINTS_ENABLED / API_DOCS_ENABLED say so,
and `python -m service serve` answers /metrics on METRICS_PORT (9100 by default) instead
of PORT. Development and test keep every one of them on PORT.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from quart import Quart

from service.app import create_app
from service.config import ConfigError, Settings, load_settings
from tests.conftest import TestServers, make_settings
from tests.processes import free_port, run_command, service_env, wait_until_up
from tests.test_metrics import get_metrics, live_pids, matching, requests_counted, start

DOCS_PATHS = ("/docs", "/redocs", "/scalar", "/openapi.json")
FAULT_PATHS = ("/error?code=503", "/slow?delay=0")
NOT_FOUND = {"status": 404, "message": "not found"}


def production(**overrides: Any) -> dict[str, Any]:
    """What a production deployment sets (another helper's ALLOWED_HOSTS included)."""
    return {
        "app_env": "production",
        "secret_key": secrets.token_urlsafe(48),
        "allowed_hosts": "localhost,127.0.0.1",
        **overrides,
    }


@pytest.fixture
async def served_app(request: pytest.FixtureRequest) -> AsyncIterator[Quart]:
    application = create_app(make_settings(**request.param))
    async with application.test_app():
        yield application


async def statuses(app: Quart, paths: tuple[str, ...]) -> dict[str, int]:
    client = app.test_client()
    return {path: (await client.get(path)).status_code for path in paths}


@pytest.mark.parametrize("served_app", [production()], indirect=True)
async def test_production_routes_no_test_endpoint_docs_or_metrics(served_app: Quart) -> None:
    client = served_app.test_client()
    for path in (*FAULT_PATHS, *DOCS_PATHS, "/metrics"):
        response = await client.get(path)
        assert response.status_code == 404, path
        body = await response.get_json()
        assert {key: body["error"][key] for key in NOT_FOUND} == NOT_FOUND, path


@pytest.mark.parametrize(
    "served_app",
    [production(fault_endpoints_enabled=True, api_docs_enabled=True)],
    indirect=True,
)
async def test_the_settings_turn_them_back_on_in_production(served_app: Quart) -> None:
    found = await statuses(served_app, (*FAULT_PATHS, *DOCS_PATHS, "/metrics"))
    assert found == {
        "/error?code=503": 503,
        "/slow?delay=0": 200,
        **dict.fromkeys(DOCS_PATHS, 200),
        "/metrics": 404,  # never on the public port in production: METRICS_PORT has it
    }
    document = await (await served_app.test_client().get("/openapi.json")).get_json()
    assert "/error" in document["paths"]


@pytest.mark.parametrize(
    "served_app",
    [{"app_env": "development"}, {"app_env": "test"}],
    indirect=True,
)
async def test_development_and_test_keep_every_path(served_app: Quart) -> None:
    found = await statuses(served_app, (*FAULT_PATHS, *DOCS_PATHS, "/metrics"))
    assert found == {
        "/error?code=503": 503,
        "/slow?delay=0": 200,
        **dict.fromkeys(DOCS_PATHS, 200),
        "/metrics": 200,
    }


@pytest.mark.parametrize(
    "served_app",
    [{"app_env": "development", "fault_endpoints_enabled": False, "api_docs_enabled": False}],
    indirect=True,
)
async def test_the_settings_turn_them_off_in_development(served_app: Quart) -> None:
    found = await statuses(served_app, (*FAULT_PATHS, *DOCS_PATHS))
    assert set(found.values()) == {404}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # (fault endpoints, docs, /metrics on PORT, metrics listener port)
        ({"app_env": "development"}, (True, True, True, None)),
        ({"app_env": "test"}, (True, True, True, None)),
        (production(), (False, False, False, 9100)),
        (production(metrics_port="9200"), (False, False, False, 9200)),
        (production(metrics_port="0"), (False, False, False, None)),
        ({"app_env": "development", "metrics_port": "9200"}, (True, True, False, 9200)),
        ({"app_env": "development", "metrics_port": ""}, (True, True, True, None)),
        (
            production(fault_endpoints_enabled="true", api_docs_enabled="1"),
            (True, True, False, 9100),
        ),
        ({"fault_endpoints_enabled": "false", "api_docs_enabled": ""}, (False, True, True, None)),
    ],
)
def test_what_each_environment_exposes(values: dict[str, Any], expected: tuple) -> None:
    settings = Settings(**values)
    assert (
        settings.fault_endpoints,
        settings.api_docs,
        settings.metrics_on_main_port,
        settings.metrics_listener_port,
    ) == expected


def test_the_metrics_port_must_differ_from_the_api_port() -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(port=8000, metrics_port=8000)
    assert refused.value.message.startswith("METRICS_PORT must differ from PORT")


# --- a real production server -------------------------------------------------------------


def production_env(port: int, metrics_port: int, **values: str) -> dict[str, str]:
    return service_env(
        APP_ENV="production",
        SECRET_KEY=secrets.token_urlsafe(48),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        DATABASE_URL=TestServers.database_url,
        PORT=str(port),
        METRICS_PORT=str(metrics_port),
        **values,
    )


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_production_server_keeps_metrics_on_their_own_port(
    workers: int, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port, metrics_port = free_port(), free_port()
    env = production_env(port, metrics_port, WEB_CONCURRENCY=str(workers))
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        server = start(["-m", "service", "serve"], env, log, processes)
    public = f"http://127.0.0.1:{port}"
    await wait_until_up(public, server)  # type: ignore[arg-type]

    async with httpx.AsyncClient(base_url=public, timeout=10) as http:
        found = {path: (await http.get(path)).status_code for path in (*FAULT_PATHS, *DOCS_PATHS)}
        metrics_on_public = await http.get("/metrics")
        for _ in range(3):
            assert (await http.get("/products")).status_code == 200
    assert set(found.values()) == {404}, found
    assert metrics_on_public.status_code == 404
    assert metrics_on_public.json()["error"]["status"] == 404

    def served(samples: list) -> bool:
        return (
            requests_counted(samples, endpoint="/products", status="200") == 3
            and len(live_pids(samples)) == workers
        )

    samples = await get_metrics(
        f"http://127.0.0.1:{metrics_port}/metrics", server, log_path, served
    )
    assert requests_counted(samples, endpoint="<unmatched>", status="404") >= len(found)
    assert matching(samples, "database_connection_pool", status="size")


def test_serve_refuses_a_metrics_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        metrics_port = taken.getsockname()[1]
        env = production_env(free_port(), metrics_port, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
        result = run_command("serve", env)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"configuration error: METRICS_PORT: 127.0.0.1:{metrics_port}")
