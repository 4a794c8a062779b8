"""No password, token, password hash or raw email in the logs or the spans.

One walk through every route that handles credentials (register, login, a failed login,
changing email and password, logout, both RealWorld's routes and the seed's), plus the
requests whose URL carries an email (a profile path, a query string, percent-encoded as
an HTML form sends it), checked against everything the process recorded: the JSON log
lines and the finished spans (names, attributes, events, resource), as exported.
tests/test_users.py checks the log lines of register and login on their own.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from quart.testing import QuartClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service.users.models import User

EMAIL, PASSWORD = "jane.doe@example.com", "first-Secret-1"
NEW_EMAIL, NEW_PASSWORD = "jane.roe@example.org", "second-Secret-2"
SEED_EMAIL, SEED_PASSWORD = "sam.seed@example.net", "seed-Secret-3"
WRONG_PASSWORD = "wrong-Secret-4"
UNKNOWN_EMAIL = "nobody.here@example.com"
# The masked forms (service/logs.py mask_emails): first character, ***, the domain.
MASKED_EMAIL = "j***@example.com"


def token_header(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}"}


async def server_spans_finished(exporter: InMemorySpanExporter, count: int) -> None:
    """The spans are exported when they end, just after the answer: wait for the last."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        finished = exporter.get_finished_spans()
        if len([span for span in finished if span.kind == SpanKind.SERVER]) >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the server spans did not finish")


async def test_no_secret_and_no_raw_email_reaches_the_logs_or_the_spans(
    client: QuartClient,
    session: AsyncSession,
    spans: InMemorySpanExporter,
    log_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    account = {"username": "jane", "email": EMAIL, "password": PASSWORD}
    seed_account = {"username": "sam", "email": SEED_EMAIL, "password": SEED_PASSWORD}
    answers = {
        "register": await client.post("/api/users", json={"user": account}),
        "seed register": await client.post("/api/register", json=seed_account),
        "login": await client.post(
            "/api/users/login", json={"user": {"email": EMAIL, "password": PASSWORD}}
        ),
        "seed login": await client.post(
            "/api/login", json={"email": SEED_EMAIL, "password": SEED_PASSWORD}
        ),
        "wrong password": await client.post(
            "/api/users/login", json={"user": {"email": EMAIL, "password": WRONG_PASSWORD}}
        ),
        "unknown email": await client.post(
            "/api/login", json={"email": UNKNOWN_EMAIL, "password": WRONG_PASSWORD}
        ),
        "taken email": await client.post(
            "/api/users", json={"user": {**account, "username": "jane2"}}
        ),
    }
    token = (await answers["login"].get_json())["user"]["token"]
    answers["update"] = await client.put(
        "/api/user",
        json={"user": {"email": NEW_EMAIL, "password": NEW_PASSWORD}},
        headers=token_header(token),
    )
    answers["login again"] = await client.post(
        "/api/users/login", json={"user": {"email": NEW_EMAIL, "password": NEW_PASSWORD}}
    )
    # The update revoked `token` (a credential change): log out with the newest one.
    newest = (await answers["login again"].get_json())["user"]["token"]
    answers["logout"] = await client.post("/api/logout", headers=token_header(newest))
    answers["after logout"] = await client.get("/api/user", headers=token_header(newest))
    # Where an email shows when nothing masks it: the request target, as typed and as an
    # HTML form encodes it (%40).
    answers["profile by email"] = await client.get(f"/api/profiles/{EMAIL}")
    answers["query by email"] = await client.get(
        "/api/articles", query_string={"author": EMAIL, "favorited": SEED_EMAIL}
    )
    answers["encoded query"] = await client.get(
        "/api/articles?author=jane.doe%40example.com&favorited=sam.seed%40example.net"
    )

    assert {name: answer.status_code for name, answer in answers.items()} == {
        "register": 201,
        "seed register": 201,
        "login": 200,
        "seed login": 200,
        "wrong password": 401,
        "unknown email": 401,
        "taken email": 422,
        "update": 200,
        "login again": 200,
        "logout": 200,
        "after logout": 401,
        "profile by email": 404,
        "query by email": 200,
        "encoded query": 200,
    }
    tokens = [token]
    for name in ("register", "seed register", "seed login", "update", "login again"):
        tokens.append((await answers[name].get_json())["user"]["token"])
    hashes = list(await session.scalars(select(User.password_hash)))
    assert len(hashes) == 2 and all(h.startswith("$argon2") for h in hashes)

    await server_spans_finished(spans, len(answers))
    logged = [json.dumps(line) for line in log_lines()]
    traced = [span.to_json(indent=None) for span in spans.get_finished_spans()]
    assert len(logged) >= len(answers)  # the access lines were captured

    secrets = [PASSWORD, NEW_PASSWORD, SEED_PASSWORD, WRONG_PASSWORD, *tokens, *hashes]
    # The local parts: they must not show in any form, typed or percent-encoded.
    emails = ["jane.doe", "jane.roe", "sam.seed", "nobody.here"]
    for name, records in (("log", logged), ("span", traced)):
        for secret in [*secrets, *emails]:
            leaks = [record for record in records if secret in record]
            assert not leaks, f"{secret!r} in a {name}: {leaks[0]}"
    # The check is able to fail: the emails in the request targets did reach both, masked.
    assert any(MASKED_EMAIL in line for line in logged)
    assert any(MASKED_EMAIL in span for span in traced)
