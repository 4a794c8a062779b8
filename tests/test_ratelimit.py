"""Rate limits on login and registration: per client IP, per account, shared through
Redis, in memory without it, and what happens when Redis is down or stuck.

Each test uses a client address and emails of its own, so that the counts it sees in
the run's shared Redis db are its own.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from quart import Quart
from quart.testing import QuartClient
from quart.wrappers import Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.app import create_app
from service.config import load_settings
from service.users.models import User
from tests.conftest import make_settings
from tests.factories import FACTORY_PASSWORD, auth_headers, make_user
from tests.processes import free_port

LOGIN_PATHS = ["/api/login", "/api/users/login"]
REGISTER_PATHS = ["/api/register", "/api/users"]
GENEROUS = "100000/minute"


def new_ip() -> str:
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


def new_email() -> str:
    return f"{uuid.uuid4().hex[:12]}@example.com"


@asynccontextmanager
async def limited_app(**overrides: Any) -> AsyncIterator[Quart]:
    """An app whose limits are all generous except those given."""
    values: dict[str, Any] = {
        "rate_limit_login_per_ip": GENEROUS,
        "rate_limit_login_per_account": GENEROUS,
        "rate_limit_login_per_account_and_ip": GENEROUS,
        "rate_limit_register_per_ip": GENEROUS,
        "rate_limit_register_per_account": GENEROUS,
        "rate_limit_email_change_per_ip": GENEROUS,
        "rate_limit_email_change_per_user": GENEROUS,
    }
    values.update(overrides)
    app = create_app(make_settings(**values))
    async with app.test_app():
        yield app


async def log_in(
    client: QuartClient,
    email: str,
    ip: str,
    password: str = "wrong password",
    path: str = "/api/users/login",
    headers: dict[str, str] | None = None,
) -> Response:
    return await client.post(
        path,
        json={"user": {"email": email, "password": password}},
        headers=headers,
        scope_base={"client": (ip, 40000)},
    )


async def sign_up(
    client: QuartClient, ip: str, path: str = "/api/users", **fields: str
) -> Response:
    number = uuid.uuid4().hex[:12]
    user = {"username": f"u{number}", "email": f"{number}@example.com", "password": "long enough"}
    user.update(fields)
    return await client.post(path, json={"user": user}, scope_base={"client": (ip, 40000)})


async def assert_too_many(response: Response, longest_wait: int = 60) -> int:
    """A 429 in the RealWorld error shape with Retry-After in seconds; returns it."""
    assert response.status_code == 429, await response.get_data(as_text=True)
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= longest_wait
    body = await response.get_json()
    assert set(body) == {"errors"} and body["errors"]["body"]
    return retry_after


async def user_count(session: AsyncSession) -> int:
    return await session.scalar(select(func.count()).select_from(User)) or 0


# --- login --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", LOGIN_PATHS)
async def test_login_over_the_ip_limit_is_429_with_retry_after(
    clean_tables: None, path: str
) -> None:
    ip, other_ip = new_ip(), new_ip()
    async with limited_app(rate_limit_login_per_ip="3/minute") as app:
        client = app.test_client()
        answers = [(await log_in(client, new_email(), ip, path=path)).status_code for _ in "abc"]

        refused = await log_in(client, new_email(), ip, path=path)
        other_client = await log_in(client, new_email(), other_ip, path=path)

    assert answers == [401, 401, 401]
    assert await assert_too_many(refused) >= 55  # the window is a minute, just begun
    assert other_client.status_code == 401


@pytest.mark.parametrize("path", LOGIN_PATHS)
async def test_login_over_the_account_limit_is_429_from_any_ip_even_with_the_password(
    session: AsyncSession, path: str
) -> None:
    user = await make_user(session, email=new_email())
    other_user = await make_user(session, email=new_email())
    async with limited_app(rate_limit_login_per_account="2/minute") as app:
        client = app.test_client()
        first = await log_in(client, user.email, new_ip(), path=path)
        second = await log_in(client, user.email.upper(), new_ip(), path=path)

        with_password = await log_in(client, user.email, new_ip(), FACTORY_PASSWORD, path=path)
        other_account = await log_in(client, other_user.email, new_ip(), FACTORY_PASSWORD, path)

    assert (first.status_code, second.status_code) == (401, 401)
    await assert_too_many(with_password)
    assert other_account.status_code == 200


async def test_the_login_routes_share_their_counts(clean_tables: None) -> None:
    email, ip = new_email(), new_ip()
    async with limited_app(rate_limit_login_per_account="2/minute") as app:
        client = app.test_client()
        answers = [(await log_in(client, email, ip, path=path)).status_code for path in LOGIN_PATHS]

        await assert_too_many(await log_in(client, email, ip, path=LOGIN_PATHS[0]))

    assert answers == [401, 401]


async def test_retry_after_is_how_long_to_wait(session: AsyncSession) -> None:
    user = await make_user(session, email=new_email())
    ip = new_ip()
    async with limited_app(rate_limit_login_per_ip="2 per 2 seconds") as app:
        client = app.test_client()
        for _ in range(2):
            assert (await log_in(client, user.email, ip, FACTORY_PASSWORD)).status_code == 200
        retry_after = await assert_too_many(await log_in(client, user.email, ip), longest_wait=2)

        await asyncio.sleep(retry_after + 0.1)
        after_waiting = await log_in(client, user.email, ip, FACTORY_PASSWORD)

    assert after_waiting.status_code == 200


async def test_a_guesser_at_one_address_cannot_lock_the_user_out(session: AsyncSession) -> None:
    """Wrong passwords for one account from one address are stopped at the pair's limit;
    the owner, from another address, still logs in. Attempts refused at the pair's limit
    do not count against the account's (looser) ceiling either."""
    user = await make_user(session, email=new_email())
    attacker, owner = new_ip(), new_ip()
    async with limited_app(
        rate_limit_login_per_account_and_ip="3/minute", rate_limit_login_per_account="5/minute"
    ) as app:
        client = app.test_client()
        guesses = [await log_in(client, user.email, attacker) for _ in range(10)]
        with_the_password_there = await log_in(client, user.email, attacker, FACTORY_PASSWORD)

        owner_logs_in = await log_in(client, user.email, owner, FACTORY_PASSWORD)

    assert [guess.status_code for guess in guesses[:3]] == [401, 401, 401]
    for refused in [*guesses[3:], with_the_password_there]:
        await assert_too_many(refused)
    assert owner_logs_in.status_code == 200, await owner_logs_in.get_data(as_text=True)


async def test_guessing_from_many_addresses_meets_the_account_ceiling(
    session: AsyncSession,
) -> None:
    user = await make_user(session, email=new_email())
    async with limited_app(
        rate_limit_login_per_account_and_ip="2/minute", rate_limit_login_per_account="4/minute"
    ) as app:
        client = app.test_client()
        guesses = [await log_in(client, user.email, ip) for ip in [new_ip(), new_ip()] * 2]

        from_a_new_address = await log_in(client, user.email, new_ip(), FACTORY_PASSWORD)

    assert [guess.status_code for guess in guesses] == [401] * 4
    await assert_too_many(from_a_new_address)


# --- registration -------------------------------------------------------------------------


@pytest.mark.parametrize("path", REGISTER_PATHS)
async def test_registering_over_the_ip_limit_is_429_and_writes_nothing(
    session: AsyncSession, path: str
) -> None:
    ip = new_ip()
    async with limited_app(rate_limit_register_per_ip="2/minute") as app:
        client = app.test_client()
        answers = [(await sign_up(client, ip, path)).status_code for _ in "ab"]

        refused = await sign_up(client, ip, path)
        other_client = await sign_up(client, new_ip(), path)

    assert answers == [201, 201]
    await assert_too_many(refused)
    assert other_client.status_code == 201
    assert await user_count(session) == 3


@pytest.mark.parametrize("field", ["email", "username"])
async def test_registering_one_email_or_username_again_and_again_is_429(
    session: AsyncSession, field: str
) -> None:
    """Trying whether an email or a username is taken is limited per account too."""
    value = new_email() if field == "email" else f"name{uuid.uuid4().hex[:8]}"
    async with limited_app(rate_limit_register_per_account="2/minute") as app:
        client = app.test_client()
        first = await sign_up(client, new_ip(), "/api/users", **{field: value})
        taken = await sign_up(client, new_ip(), "/api/users", **{field: value})

        refused = await sign_up(client, new_ip(), "/api/register", **{field: value})

    assert (first.status_code, taken.status_code) == (201, 422)
    await assert_too_many(refused)
    assert await user_count(session) == 1


# --- email changes ------------------------------------------------------------------------


async def change_email(app: Quart, user: User, email: str, ip: str) -> Response:
    return await app.test_client().put(
        "/api/user",
        json={"user": {"email": email}},
        headers=auth_headers(app, user),
        scope_base={"client": (ip, 40000)},
    )


async def test_probing_emails_through_the_profile_is_429_per_user(session: AsyncSession) -> None:
    """`already taken` tells whether an address has an account: trying address after
    address is limited, from any IP; other changes of the profile are not."""
    user = await make_user(session, email=new_email())
    others = [await make_user(session, email=new_email()) for _ in range(3)]
    async with limited_app(rate_limit_email_change_per_user="2/minute") as app:
        probes = [await change_email(app, user, other.email, new_ip()) for other in others]
        own_email_again = await change_email(app, user, user.email, new_ip())
        bio = await app.test_client().put(
            "/api/user", json={"user": {"bio": "still me"}}, headers=auth_headers(app, user)
        )
        another_user = await change_email(app, others[0], new_email(), new_ip())

    assert [probe.status_code for probe in probes[:2]] == [422, 422]
    await assert_too_many(probes[2])
    assert own_email_again.status_code == 200
    assert bio.status_code == 200
    assert another_user.status_code == 200


async def test_probing_emails_through_the_profile_is_429_per_ip(session: AsyncSession) -> None:
    """Many accounts of one prober, one address."""
    ip = new_ip()
    taken = await make_user(session, email=new_email())
    probers = [await make_user(session, email=new_email()) for _ in range(3)]
    async with limited_app(rate_limit_email_change_per_ip="2/minute") as app:
        probes = [await change_email(app, prober, taken.email, ip) for prober in probers]
        other_address = await change_email(app, probers[2], taken.email, new_ip())

    assert [probe.status_code for probe in probes[:2]] == [422, 422]
    await assert_too_many(probes[2])
    assert other_address.status_code == 422


# --- client address -----------------------------------------------------------------------


async def test_x_forwarded_for_is_ignored_unless_proxies_are_trusted(clean_tables: None) -> None:
    ip = new_ip()
    async with limited_app(rate_limit_login_per_ip="2/minute") as app:
        client = app.test_client()
        answers = [
            await log_in(client, new_email(), ip, headers={"X-Forwarded-For": new_ip()})
            for _ in range(3)
        ]

    assert [answer.status_code for answer in answers[:2]] == [401, 401]
    await assert_too_many(answers[2])


async def test_behind_one_trusted_proxy_the_forwarded_client_counts(clean_tables: None) -> None:
    proxy, client_ip = new_ip(), new_ip()
    async with limited_app(rate_limit_login_per_ip="2/minute", trusted_proxy_hops=1) as app:
        client = app.test_client()

        # The address a client made up comes first; the proxy appends the one it saw.
        def through_proxy(claimed: str) -> dict[str, str]:
            return {"X-Forwarded-For": f"{claimed}, {client_ip}"}

        answers = [
            await log_in(client, new_email(), proxy, headers=through_proxy(new_ip()))
            for _ in range(3)
        ]
        other_client = await log_in(
            client, new_email(), proxy, headers={"X-Forwarded-For": new_ip()}
        )

    assert [answer.status_code for answer in answers[:2]] == [401, 401]
    await assert_too_many(answers[2])
    assert other_client.status_code == 401


# --- storage ------------------------------------------------------------------------------


async def test_the_counts_are_shared_by_every_process_through_redis(clean_tables: None) -> None:
    """Two apps (two API processes) on one Redis: attempts on either count for both."""
    email = new_email()
    async with (
        limited_app(rate_limit_login_per_account="2/minute") as first,
        limited_app(rate_limit_login_per_account="2/minute") as second,
    ):
        on_first = await log_in(first.test_client(), email, new_ip())
        on_second = await log_in(second.test_client(), email, new_ip())

        refused_by_first = await log_in(first.test_client(), email, new_ip())

    assert (on_first.status_code, on_second.status_code) == (401, 401)
    await assert_too_many(refused_by_first)


async def test_without_redis_the_limits_count_in_memory(clean_tables: None) -> None:
    ip = new_ip()
    async with limited_app(redis_url=None, rate_limit_login_per_ip="2/minute") as app:
        client = app.test_client()
        answers = [(await log_in(client, new_email(), ip)).status_code for _ in "ab"]

        await assert_too_many(await log_in(client, new_email(), ip))

    assert answers == [401, 401]


async def test_with_redis_down_logins_work_and_are_limited_in_memory(
    session: AsyncSession, log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    user = await make_user(session, email=new_email())
    nothing_listens = f"redis://127.0.0.1:{free_port()}/0"
    async with limited_app(
        redis_url=nothing_listens, rate_limit_login_per_account="3/minute"
    ) as app:
        client = app.test_client()
        logged_in = await log_in(client, user.email, new_ip(), FACTORY_PASSWORD)
        wrong = [await log_in(client, user.email, new_ip()) for _ in "ab"]

        refused = await log_in(client, user.email, new_ip(), FACTORY_PASSWORD)

    assert logged_in.status_code == 200
    assert [answer.status_code for answer in wrong] == [401, 401]
    await assert_too_many(refused)
    warnings = [line for line in log_lines() if line["logger"] == "service.ratelimit"]
    assert len(warnings) == 1, warnings  # once per retry interval, not once per request
    assert warnings[0]["level"] == "WARNING"
    assert "Redis failed" in warnings[0]["message"]


async def test_a_stuck_redis_delays_a_login_by_at_most_a_second(session: AsyncSession) -> None:
    """A Redis that accepts connections and never answers (a hung server, a black hole)."""
    user = await make_user(session, email=new_email())
    connections: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    stuck = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = stuck.sockets[0].getsockname()[1]
    try:
        async with limited_app(redis_url=f"redis://127.0.0.1:{port}/0") as app:
            client = app.test_client()
            started = time.perf_counter()
            first = await log_in(client, user.email, new_ip(), FACTORY_PASSWORD)
            first_seconds = time.perf_counter() - started
            started = time.perf_counter()
            second = await log_in(client, user.email, new_ip(), FACTORY_PASSWORD)
            second_seconds = time.perf_counter() - started
    finally:
        for writer in connections:
            writer.close()
        stuck.close()
        await stuck.wait_closed()

    assert connections, "the limiter never tried the stuck Redis"
    assert (first.status_code, second.status_code) == (200, 200)
    assert first_seconds < 1.5, first_seconds
    assert second_seconds < 0.5, second_seconds  # Redis is not tried again at once


async def test_rate_limits_can_be_switched_off(clean_tables: None) -> None:
    ip, email = new_ip(), new_email()
    async with limited_app(rate_limit_enabled=False, rate_limit_login_per_ip="1/minute") as app:
        client = app.test_client()
        answers = {(await log_in(client, email, ip)).status_code for _ in range(5)}

    assert answers == {401}


# --- settings -----------------------------------------------------------------------------


def test_rate_limit_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATE_LIMIT_LOGIN_PER_IP", "5 per minute; 100/hour")
    monkeypatch.setenv("RATE_LIMIT_REGISTER_PER_ACCOUNT", "")

    settings = load_settings()

    assert settings.rate_limit_enabled is True
    assert settings.rate_limit_login_per_ip == "5 per minute; 100/hour"
    assert settings.rate_limit_register_per_account == ""
