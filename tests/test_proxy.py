"""The compose stack's Caddyfile, run by Debian's real Caddy in front of the real service.

`caddy validate` checks the file as written; then Caddy is started with it on 127.0.0.1
(the file's environment placeholders choose the address, the upstream and the static
folder) in front of `python -m service serve`, and requests go through it.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest

from service.__main__ import PROJECT_ROOT
from tests.processes import free_port, json_lines, run_command, wait_until_up
from tests.test_compose import env_example

CADDYFILE = PROJECT_ROOT / "deploy" / "caddy" / "Caddyfile"
STATIC_DIR = PROJECT_ROOT / "service" / "static"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class Stack(NamedTuple):
    proxy_url: str
    api_url: str
    admin_url: str


def caddy() -> str:
    path = shutil.which("caddy")
    assert path, "caddy is missing: apt-get install caddy (.ci/run does)"
    return path


def caddy_env(tmp_path: Path, **placeholders: str) -> dict[str, str]:
    # Caddy keeps its state under XDG_DATA_HOME / XDG_CONFIG_HOME: a folder of this test's.
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        **placeholders,
    }


async def wait_for_proxy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            assert process.poll() is None, "caddy exited during start-up"
            try:
                if (await http.get(f"{url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("caddy did not proxy /healthz within 20 s")


def read_api_log(process: subprocess.Popen[str]) -> list[dict[str, Any]]:
    """Stop the API and return the JSON lines it logged."""
    process.terminate()
    output, _ = process.communicate(timeout=30)
    return json_lines(output)


def test_the_caddyfile_is_valid() -> None:
    result = subprocess.run(
        [caddy(), "validate", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Valid configuration" in result.stdout + result.stderr


def test_caddy_validate_refuses_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "Caddyfile"
    broken.write_text(CADDYFILE.read_text().replace("reverse_proxy", "reverse_proxxy"))
    result = subprocess.run(
        [caddy(), "validate", "--config", str(broken), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "reverse_proxxy" in result.stderr


@pytest.fixture
async def stack(
    tmp_path: Path, start_server, sqlite_env: dict[str, str]
) -> AsyncIterator[tuple[Stack, subprocess.Popen[str]]]:
    assert run_command("migrate", sqlite_env).returncode == 0
    # Behind Caddy as in compose: its proxy settings, from .env.example.
    assigned, _ = env_example()
    behind_caddy = {name: assigned[name] for name in ("TRUSTED_PROXY_HOPS", "ALLOWED_HOSTS")}
    api = start_server({**sqlite_env, "LOG_LEVEL": "INFO", **behind_caddy})
    api_url = f"http://127.0.0.1:{sqlite_env['PORT']}"
    await wait_until_up(api_url, api)

    proxy_port, admin_port = free_port(), free_port()
    placeholders = {
        "CADDY_SITE_ADDRESS": f":{proxy_port}",
        "CADDY_BIND": "127.0.0.1",
        "CADDY_ADMIN": f"127.0.0.1:{admin_port}",
        "API_UPSTREAM": f"127.0.0.1:{sqlite_env['PORT']}",
        "STATIC_ROOT": str(STATIC_DIR),
    }
    with (tmp_path / "caddy.log").open("wb") as caddy_log:
        proxy = subprocess.Popen(
            [caddy(), "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
            env=caddy_env(tmp_path, **placeholders),
            stdout=caddy_log,
            stderr=subprocess.DEVNULL,
        )
        try:
            proxy_url = f"http://127.0.0.1:{proxy_port}"
            await wait_for_proxy(proxy_url, proxy)
            yield Stack(proxy_url, api_url, f"http://127.0.0.1:{admin_port}"), api
        finally:
            proxy.terminate()
            proxy.wait(timeout=10)


async def test_a_request_through_the_proxy_keeps_its_request_id_and_trace(stack) -> None:
    endpoints, api = stack
    request_id = f"through-caddy-{uuid.uuid4().hex}"
    async with httpx.AsyncClient(base_url=endpoints.proxy_url, timeout=10) as http:
        response = await http.get(
            "/products", headers={"X-Request-ID": request_id, "traceparent": TRACEPARENT}
        )
    assert response.status_code == 200
    assert response.json() == []
    assert response.headers["x-request-id"] == request_id
    assert response.headers["traceparent"].split("-")[1] == TRACE_ID
    assert "Caddy" in response.headers["server"]

    access = [line for line in read_api_log(api) if line.get("http.path") == "/products"]
    assert len(access) == 1
    assert access[0]["request_id"] == request_id
    assert access[0]["trace_id"] == TRACE_ID


async def test_proxy_and_api_log_lines_share_the_request_id(stack, tmp_path: Path) -> None:
    endpoints, api = stack
    async with httpx.AsyncClient(base_url=endpoints.proxy_url, timeout=10) as http:
        response = await http.get("/products")
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    assert UUID.fullmatch(request_id), request_id  # made by the API: the client sent none

    access = [line for line in read_api_log(api) if line.get("http.path") == "/products"]
    assert [line["request_id"] for line in access] == [request_id]
    proxied = [
        line
        for line in json_lines((tmp_path / "caddy.log").read_text())
        if line.get("logger", "").startswith("http.log.access")
        and line["request"]["uri"] == "/products"
    ]
    assert len(proxied) == 1
    assert proxied[0]["status"] == 200
    assert proxied[0]["resp_headers"]["X-Request-Id"] == [request_id]


async def test_static_files_are_served_by_caddy_not_the_api(stack) -> None:
    endpoints, api = stack
    expected = (STATIC_DIR / "style.css").read_bytes()
    async with httpx.AsyncClient(timeout=10) as http:
        through_proxy = await http.get(f"{endpoints.proxy_url}/static/style.css")
        from_api = await http.get(f"{endpoints.api_url}/static/style.css")
        missing = await http.get(f"{endpoints.proxy_url}/static/no-such-file.css")
        admin = await http.get(f"{endpoints.admin_url}/config/")

    assert through_proxy.status_code == 200
    assert through_proxy.content == expected
    assert through_proxy.headers["cache-control"] == "public, max-age=3600"
    # The API marks every response it answers with a request id; Caddy's own do not have one.
    assert "x-request-id" not in through_proxy.headers
    assert from_api.status_code == 200 and "x-request-id" in from_api.headers
    assert missing.status_code == 404 and "x-request-id" not in missing.headers
    # The compose healthcheck asks the admin endpoint.
    assert admin.status_code == 200

    paths = [line.get("http.path") for line in read_api_log(api)]
    assert paths.count("/static/style.css") == 1  # only the direct request
    assert "/static/no-such-file.css" not in paths


# Paths the API (development mode here) routes to its test endpoints or its metrics,
# spelt as clients could spell them to slip past a plain string match.
INTERNAL_PATHS = (
    "/error?code=500",
    "/slow?delay=0",
    "/metrics",
    "//error?code=500",
    "/%65rror?code=500",
    "/%2Fslow?delay=0",
)


async def test_the_test_endpoints_and_metrics_are_refused_by_the_proxy(stack) -> None:
    endpoints, api = stack
    async with httpx.AsyncClient(timeout=10) as http:
        direct = [
            (await http.get(f"{endpoints.api_url}{path}")).status_code for path in INTERNAL_PATHS
        ]
        proxied = [await http.get(f"{endpoints.proxy_url}{path}") for path in INTERNAL_PATHS]

    # Each spelling reaches its route on the API itself: the proxy is what stops it.
    assert [status != 404 for status in direct] == [True] * len(INTERNAL_PATHS), direct
    for path, response in zip(INTERNAL_PATHS, proxied, strict=True):
        assert response.status_code == 404, path
        assert response.json() == {"error": {"status": 404, "message": "not found"}}, path
        assert "x-request-id" not in response.headers, path  # Caddy's own answer
    logged = [line["http.path"] for line in read_api_log(api) if "http.path" in line]
    reached = [path for path in logged if "error" in path or "slow" in path]
    assert len(reached) == len(INTERNAL_PATHS) - 1, reached  # the direct requests only


async def test_behind_caddy_the_api_sees_the_client_and_answers_only_its_hosts(stack) -> None:
    """Compose's TRUSTED_PROXY_HOPS and ALLOWED_HOSTS behind the real Caddy: a client's
    made-up X-Forwarded-For is not what the API logs (Caddy replaces it with the address it
    saw), a Host the list does not name is the API's 400, and the seed's curl-style form
    post (no Origin, no Sec-Fetch-Site, no cookie) still adds a todo."""
    endpoints, api = stack
    async with httpx.AsyncClient(base_url=endpoints.proxy_url, timeout=10) as http:
        spoofed = await http.get(
            "/products", headers={"X-Forwarded-For": "203.0.113.7", "X-Request-ID": "spoofed"}
        )
        by_name = await http.get("/products", headers={"Host": "LocalHost:8080"})
        rebound = await http.get(
            "/products", headers={"Host": "evil.example", "X-Request-ID": "rebound"}
        )
        added = await http.post("/add", data={"task": "through caddy"})
        todos = await http.get("/todos")

    assert (spoofed.status_code, by_name.status_code) == (200, 200)
    assert rebound.status_code == 400
    assert rebound.json()["error"]["request_id"] == "rebound"  # the API's answer
    assert "Host" in rebound.json()["error"]["message"]
    assert added.status_code == 303
    assert [todo["task"] for todo in todos.json()] == ["through caddy"]
    lines = {line.get("request_id"): line for line in read_api_log(api)}
    assert lines["spoofed"]["client_ip"] == "127.0.0.1"
    assert lines["rebound"]["status_code"] == 400
