"""Behind a proxy: X-Forwarded-Proto / -For honoured only from TRUSTED_PROXY_HOPS proxies,
so that the CSRF cookie's `Secure`, the access log's client and the rate limits' key
agree; the ALLOWED_HOSTS list (400 for any other Host, required in production).

tests/test_proxy.py runs the same settings behind the real Caddy.
"""

from __future__ import annotations

import os
import random
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from http.cookies import SimpleCookie
from typing import Any

import pytest
from quart import Quart
from quart.testing import QuartClient
from quart.wrappers import Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.app import create_app
from service.config import load_settings
from service.todos.models import Todo
from tests.conftest import make_settings
from tests.processes import run_command

LogLines = Callable[[], list[dict[str, Any]]]


def new_ip() -> str:
    """An address of this test's own: the rate-limit counts in the run's Redis are shared."""
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


@asynccontextmanager
async def app_with(**overrides: Any) -> AsyncIterator[Quart]:
    app = create_app(make_settings(**overrides))
    async with app.test_app():
        yield app


async def log_in(client: QuartClient, peer: str, forwarded_for: str, request_id: str) -> Response:
    """A failed login from the socket address `peer` that says X-Forwarded-For."""
    return await client.post(
        "/api/users/login",
        json={"user": {"email": f"{uuid.uuid4().hex[:12]}@example.com", "password": "wrong!!!"}},
        headers={"X-Forwarded-For": forwarded_for, "X-Request-ID": request_id},
        scope_base={"client": (peer, 40000)},
    )


def access_line(log_lines: LogLines, request_id: str) -> dict[str, Any]:
    [line] = [
        line
        for line in log_lines()
        if line["logger"] == "service.access" and line.get("request_id") == request_id
    ]
    return line


# --- the scheme: the CSRF cookie's Secure flag ----------------------------------------------


@pytest.mark.parametrize(
    ("hops", "headers", "secure"),
    [
        pytest.param(1, {"X-Forwarded-Proto": "https"}, True, id="https at a trusted proxy"),
        pytest.param(1, {}, False, id="trusted proxy, no header: the socket's http"),
        pytest.param(0, {"X-Forwarded-Proto": "https"}, False, id="no trusted proxy: ignored"),
    ],
)
async def test_the_csrf_cookie_is_secure_when_a_trusted_proxy_got_https(
    clean_tables: None, hops: int, headers: dict[str, str], secure: bool
) -> None:
    async with app_with(trusted_proxy_hops=hops) as app:
        response = await app.test_client().get("/", headers=headers)

    assert response.status_code == 200
    cookie = SimpleCookie(response.headers["Set-Cookie"])["csrf_token"]
    assert bool(cookie["secure"]) is secure
    assert cookie["httponly"] and cookie["samesite"] == "Strict"


# --- the client address: access log and rate limits -----------------------------------------


@pytest.mark.parametrize("hops", [0, 1])
async def test_the_access_log_and_the_rate_limit_see_the_same_client(
    clean_tables: None, log_lines: LogLines, hops: int
) -> None:
    """Each login comes from one proxy (the socket's peer) with X-Forwarded-For
    `<made up by the client>, <the address the proxy saw>`. Behind one trusted hop the client
    is the last entry; with none the header is ignored, so a client that makes up a new
    address per request neither hides in the log nor escapes its limit."""
    proxy, client_ip, other_client = new_ip(), new_ip(), new_ip()
    expected = client_ip if hops else proxy
    run = uuid.uuid4().hex
    async with app_with(trusted_proxy_hops=hops, rate_limit_login_per_ip="2/minute") as app:
        client = app.test_client()
        answers = [
            await log_in(client, proxy, f"{new_ip()}, {client_ip}", f"{run}-{attempt}")
            for attempt in range(3)
        ]
        from_another_client = await log_in(client, proxy, other_client, f"{run}-other")

    assert [answer.status_code for answer in answers] == [401, 401, 429]
    # Behind the proxy another client has attempts of its own; without it, it is the proxy.
    assert from_another_client.status_code == (401 if hops else 429)
    for attempt in range(3):
        assert access_line(log_lines, f"{run}-{attempt}")["client_ip"] == expected
    assert access_line(log_lines, f"{run}-other")["client_ip"] == (other_client if hops else proxy)


def test_the_old_setting_name_still_sets_the_hops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRUSTED_PROXY_HOPS", raising=False)
    monkeypatch.setenv("RATE_LIMIT_TRUSTED_PROXY_HOPS", "1")

    assert load_settings().trusted_proxy_hops == 1


# --- the Host allow-list --------------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["api.example.com", "api.example.com:8443", "API.Example.COM", "[::1]:8000"]
)
async def test_a_listed_host_is_served_with_any_port_and_case(
    clean_tables: None, host: str
) -> None:
    async with app_with(allowed_hosts="api.example.com, [::1]") as app:
        response = await app.test_client().get("/products", headers={"Host": host})

    assert response.status_code == 200
    assert await response.get_json() == []


@pytest.mark.parametrize(
    ("path", "host"),
    [
        ("/products", "evil.example"),
        ("/products", "api.example.com.evil.example"),
        ("/health", "evil.example:8000"),
        ("/no/such/page", "evil.example"),
        ("/api/articles", "evil.example"),
    ],
)
async def test_any_other_host_is_a_400_in_the_error_shape(
    clean_tables: None, path: str, host: str
) -> None:
    async with app_with(allowed_hosts="api.example.com") as app:
        response = await app.test_client().get(
            path, headers={"Host": host, "X-Request-ID": "wrong-host"}
        )

    assert response.status_code == 400
    body = await response.get_json()
    if path.startswith("/api/"):  # the RealWorld error model, as every /api error
        assert body == {"errors": {"body": [body["errors"]["body"][0]]}}
        assert "Host" in body["errors"]["body"][0]
    else:
        assert body["error"]["status"] == 400
        assert body["error"]["request_id"] == "wrong-host"
        assert "Host" in body["error"]["message"]


@pytest.mark.parametrize(("hops", "status"), [(1, 200), (0, 400)])
async def test_a_trusted_proxy_that_rewrites_the_host_says_which_one_it_got(
    clean_tables: None, hops: int, status: int
) -> None:
    """A proxy that sends its upstream's address as Host (nginx's default) and the client's
    Host as X-Forwarded-Host: checked by the latter only when the proxy is trusted."""
    async with app_with(allowed_hosts="api.example.com", trusted_proxy_hops=hops) as app:
        response = await app.test_client().get(
            "/products", headers={"Host": "10.1.2.3:8000", "X-Forwarded-Host": "api.example.com"}
        )

    assert response.status_code == status


async def test_the_probes_answer_any_host(clean_tables: None) -> None:
    """Kubelets, Docker's HEALTHCHECK and load balancers ask by address (`10.1.2.3:8000`)."""
    async with app_with(allowed_hosts="api.example.com") as app:
        client = app.test_client()
        answers = [
            await client.get(path, headers={"Host": "10.1.2.3:8000"})
            for path in ("/healthz", "/readyz", "/healthz/background", "/health")
        ]

    assert [answer.status_code for answer in answers] == [200, 200, 400, 400]


async def test_a_post_to_another_host_reaches_no_route(session: AsyncSession) -> None:
    """The seed's `curl -X POST /add -d task=...`, sent to a name we do not answer to."""
    async with app_with(allowed_hosts="api.example.com") as app:
        client = app.test_client()
        refused = await client.post("/add", form={"task": "rebound"}, headers={"Host": "evil"})
        added = await client.post(
            "/add", form={"task": "listed"}, headers={"Host": "api.example.com"}
        )

    assert (refused.status_code, added.status_code) == (400, 303)
    assert list(await session.scalars(select(Todo.task))) == ["listed"]
    assert await session.scalar(select(func.count()).select_from(Todo)) == 1


@pytest.mark.parametrize("allowed", ["", "*"])
async def test_development_and_test_answer_any_host_by_default(
    clean_tables: None, allowed: str
) -> None:
    async with app_with(allowed_hosts=allowed) as app:
        response = await app.test_client().get("/products", headers={"Host": "anything.example"})

    assert response.status_code == 200


@pytest.mark.parametrize("allowed", [None, "", "*"], ids=["unset", "empty", "star"])
def test_production_without_allowed_hosts_refuses_to_start(allowed: str | None) -> None:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("APP_", "DATABASE", "ALLOWED_HOSTS"))
    }
    environment.update(
        APP_ENV="production",
        SECRET_KEY=secrets.token_urlsafe(48),
        DATABASE_URL="sqlite:///unused.db",
        PORT="1",  # never reached
    )
    if allowed is not None:
        environment["ALLOWED_HOSTS"] = allowed
    result = run_command("serve", environment)

    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("configuration error: ALLOWED_HOSTS must list the host names")
