"""Fuzzing the API from its own OpenAPI document (schemathesis), and what the fuzzer found.

`test_fuzz_openapi` serves the app (hypercorn, `python -m service serve`) on this run's
PostgreSQL database and runs `st run` against `/openapi.json`: every operation, all four
phases (examples, coverage, fuzzing, and stateful sequences along the links schemathesis
infers, such as create -> get -> update -> delete), positive and negative data, every
built-in check (no 5xx, documented status codes, content types, headers and schemas,
schema-valid data accepted, invalid data refused, auth enforced, nothing usable after a
DELETE, ...) plus `error_shape` (tests/fuzz_hooks.py: every error is our JSON error). Each
request carries a valid token of its own, so the fuzzer gets past 401.

Bounded for CI: FUZZ_EXAMPLES (default 10) examples per operation and phase, with a fixed
FUZZ_SEED, about a minute and a half. A longer local run, with a fresh seed each time:

    FUZZ_EXAMPLES=200 FUZZ_SEED=random .venv/bin/python -m pytest tests/test_fuzz.py -k fuzz_openapi

A failure prints schemathesis' report: each finding with a curl command that reproduces it.

The other tests are the fuzzer's findings, fixed and kept as plain regression tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import secrets
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from quart.testing import QuartClient
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from service.__main__ import PROJECT_ROOT
from service.app import create_app
from service.db import reading
from service.fields import NO_NUL_PATTERN
from service.items.models import Item
from service.todos.models import Todo
from tests.conftest import TestServers, make_settings
from tests.factories import make_item
from tests.load import served
from tests.processes import free_port, service_env, wait_until_up

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))
_seed = os.environ.get("FUZZ_SEED", "20261201")
FUZZ_SEED = random.randrange(2**32) if _seed == "random" else int(_seed)

# What the OpenAPI document cannot say, each with its reason. Anything else the fuzzer
# reports is a bug to fix in the service, or in the document.
FUZZ_CONFIG = """
[warnings]
# The token never worked, a filter below names no operation, ...: the run proves nothing.
fail-on = ["missing_auth", "unmatched_filter", "unsupported_regex", "unresolvable_reference"]

[[operations]]
# /slow sleeps up to 30 s per request by design; /error answers a 5xx by design.
include-path = ["/slow", "/error"]
enabled = false

[[operations]]
# An If-Match the item does not match is a 412 (the precondition failed), whatever its form.
include-name = ["PUT /items/{item_id}", "PATCH /items/{item_id}", "DELETE /items/{item_id}"]
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "401", "403", "404", "409", "412", "429", "5xx",
]

[[operations]]
# RealWorld answers a taken email or username, and following yourself, with a 422.
include-name = ["POST /api/users", "PUT /api/user", "POST /api/profiles/{username}/follow"]
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx",
]

[[operations]]
# The page's forms refuse a csrf_token that does not match its cookie (CSRF, a 400).
include-path = ["/add", "/todos/{todo_id}/toggle", "/todos/{todo_id}/delete", "/export/start"]
checks.positive_data_acceptance.enabled = false

[[operations]]
# /api/articles/feed is also /api/articles/<slug> (slug "feed"), so werkzeug's Allow for it
# lists that rule's PUT and DELETE too.
include-path = "/api/articles/feed"
checks.allow_header_conformance.enabled = false

[[operations]]
# It deletes with a POST (an HTML form cannot send DELETE), which schemathesis does not
# count as a deletion: the todo's 404s afterwards would read as "created resource not found".
include-name = "POST /todos/{todo_id}/delete"
phases.stateful.enabled = false
"""


@dataclass(frozen=True)
class ServedApp:
    base_url: str
    secret_key: str
    log_path: Path


@pytest.fixture
async def served_app(clean_tables: None, tmp_path: Path) -> AsyncIterator[ServedApp]:
    """The service in a process of its own on this run's database (`clean_tables` empties
    the tables after it has stopped)."""
    port = free_port()
    secret_key = secrets.token_urlsafe(48)
    env = service_env(
        DATABASE_URL=TestServers.database_url,
        PORT=str(port),
        SECRET_KEY=secret_key,
        LOG_LEVEL="WARNING",  # no access lines: the log keeps only what went wrong
        RATE_LIMIT_ENABLED="false",  # the fuzzer registers and logs in much faster than people
        GRACEFUL_TIMEOUT="2",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    log_path = tmp_path / "server.log"
    base_url = f"http://127.0.0.1:{port}"
    with served(env, log_path) as process:
        await wait_until_up(base_url, process)
        yield ServedApp(base_url=base_url, secret_key=secret_key, log_path=log_path)


async def register_fuzz_user(served: ServedApp) -> int:
    """The user whose tokens the fuzzer sends (tests/fuzz_hooks.py mints one per request)."""
    body = {"user": {"username": "fuzzer", "email": "fuzzer@example.com", "password": "x" * 12}}
    async with httpx.AsyncClient(base_url=served.base_url) as http:
        response = await http.post("/api/users", json=body)
    assert response.status_code == 201, response.text
    token = response.json()["user"]["token"]
    return int(jwt.decode(token, served.secret_key, algorithms=["HS256"])["sub"])


def findings(report: str) -> str:
    """Schemathesis' failures and summary: the part of its report worth reading."""
    start = report.find("=== FAILURES")
    if start == -1:
        start = report.find("=== ERRORS")
    return report[start:] if start != -1 else report[-20_000:]


async def test_fuzz_openapi(served_app: ServedApp, tmp_path: Path) -> None:
    user_id = await register_fuzz_user(served_app)
    async with httpx.AsyncClient(base_url=served_app.base_url) as http:
        document = (await http.get("/openapi.json")).json()
    operations = sum(len(methods) for methods in document["paths"].values())
    disabled = len(document["paths"]["/slow"]) + len(document["paths"]["/error"])  # FUZZ_CONFIG
    config = tmp_path / "schemathesis.toml"
    # More stateful sequences than single calls: they are cheap, and they are what reaches
    # the update and delete paths of a resource that exists.
    stateful = f"[phases.stateful.generation]\nmax-examples = {3 * FUZZ_EXAMPLES}\n"
    config.write_text(stateful + FUZZ_CONFIG)
    env = service_env(
        SCHEMATHESIS_HOOKS="tests.fuzz_hooks",
        PYTHONPATH=str(PROJECT_ROOT),
        SECRET_KEY=served_app.secret_key,
        FUZZ_USER_ID=str(user_id),
    )
    # cwd: schemathesis and Hypothesis keep their caches there, out of the repository.
    fuzzer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        f"{served_app.base_url}/openapi.json",
        f"--max-examples={FUZZ_EXAMPLES}",
        f"--seed={FUZZ_SEED}",
        # One worker: Python 3.11's ast.parse is not thread-safe ("AST constructor recursion
        # depth mismatch" inside Hypothesis), and concurrent scenarios would delete each
        # other's resources.
        "--workers=1",
        "--request-timeout=10",
        "--generation-database=none",
        "--no-color",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(fuzzer.communicate(), timeout=600 + 30 * FUZZ_EXAMPLES)
    report = output.decode()
    server_errors = [
        line for line in served_app.log_path.read_text().splitlines() if '"level":"ERROR"' in line
    ]

    assert fuzzer.returncode == 0, f"FUZZ_SEED={FUZZ_SEED}\n{findings(report)}"
    tested = re.search(r"Tested: +(\d+)", report)
    assert tested is not None and int(tested.group(1)) == operations - disabled, report[-3000:]
    assert "✅ Stateful" in report, report[-3000:]  # the links were found and followed
    assert server_errors == []


# --- what the fuzzer found ---------------------------------------------------------------


async def openapi(client: QuartClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    return await response.get_json()


async def test_openapi_path_with_an_untyped_then_a_typed_parameter(client: QuartClient) -> None:
    # quart-schema's pattern documented DELETE .../comments/<id:comment_id> as
    # /api/articles/{comment_id}, which is another route (the article's).
    paths = (await openapi(client))["paths"]

    operation = paths["/api/articles/{slug}/comments/{comment_id}"]["delete"]
    assert {parameter["name"] for parameter in operation["parameters"]} == {"slug", "comment_id"}
    assert "/api/articles/{comment_id}" not in paths


async def test_openapi_documents_every_answer(client: QuartClient) -> None:
    # Error answers, 204s and the page's 303s were not documented at all: every error the
    # fuzzer met was an "undocumented status code".
    document = await openapi(client)
    paths = document["paths"]

    assert sorted(paths["/items"]["post"]["responses"]) == ["201", "400", "413", "415", "422"]
    assert paths["/items/{item_id}"]["delete"]["responses"]["204"] == {"description": "No Content"}
    assert sorted(paths["/add"]["post"]["responses"]) == ["303", "400", "413", "422"]
    assert "content" not in paths["/add"]["post"]["responses"]["303"]
    assert sorted(paths["/api/articles/{slug}"]["delete"]["responses"]) == [
        "204",
        "401",
        "403",
        "404",
    ]
    health_checks = {"/health", "/readyz", "/healthz/background", "/api/health"}  # their own 503s
    for path, operations in paths.items():
        expected = "RealWorldErrorOut" if path.startswith("/api/") else "ErrorOut"
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400 and path not in health_checks:
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": f"#/components/schemas/{expected}"}, (path, method)
    error_body = document["components"]["schemas"]["ErrorBody"]
    assert set(error_body["required"]) == {"status", "message", "request_id"}


async def test_openapi_documents_the_token(client: QuartClient) -> None:
    # No security scheme: a client (or the fuzzer) could not know where the token goes.
    document = await openapi(client)
    paths = document["paths"]

    assert document["components"]["securitySchemes"]["Token"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "`Token <jwt>` (RealWorld's form) or `Bearer <jwt>`: the token from login",
    }
    assert paths["/api/user"]["get"]["security"] == [{"Token": []}]
    assert "401" in paths["/api/user"]["get"]["responses"]
    assert paths["/api/articles"]["get"]["security"] == [{}, {"Token": []}]
    assert "security" not in paths["/api/users"]["post"]
    assert "security" not in paths["/items"]["get"]


async def test_openapi_states_the_validation_rules(client: QuartClient) -> None:
    # Each was a "schema-valid request rejected": the document allowed what the service
    # refuses (a NUL character, an unknown sort column, an empty PATCH, no body at all).
    paths = (await openapi(client))["paths"]

    def body_schema(path: str, method: str) -> dict[str, Any]:
        return paths[path][method]["requestBody"]["content"]["application/json"]["schema"]

    assert body_schema("/items", "post")["properties"]["name"]["pattern"] == NO_NUL_PATTERN
    item_query = {p["name"]: p["schema"] for p in paths["/items"]["get"]["parameters"]}
    assert set(item_query["sort"]["enum"]) >= {"id", "-id", "price", "-updated_at"}
    assert item_query["name"]["pattern"] == NO_NUL_PATTERN
    assert body_schema("/items/{item_id}", "patch")["minProperties"] == 1
    assert body_schema("/todos/{todo_id}", "patch")["minProperties"] == 1
    assert paths["/items"]["post"]["requestBody"]["required"] is True
    assert paths["/add"]["post"]["requestBody"]["required"] is True
    assert paths["/todos/{todo_id}/toggle"]["post"]["requestBody"].get("required") is not True


async def test_openapi_documents_the_realworld_envelope(client: QuartClient) -> None:
    # The /api bodies were documented flat only; RealWorld clients send {"user": {...}}.
    document = await openapi(client)
    body = document["paths"]["/api/users"]["post"]["requestBody"]["content"]["application/json"]
    enveloped, flat = body["schema"]["anyOf"]

    assert enveloped["required"] == ["user"]
    assert set(enveloped["properties"]["user"]["required"]) == {"username", "email", "password"}
    assert flat["properties"]["user"] is False  # {"user": "x"} is neither form: a 422
    assert set(flat["required"]) == {"username", "email", "password"}


@pytest.mark.parametrize("path", ["/api/login", "/api/users/login"])
@pytest.mark.parametrize(
    "credentials",
    [
        pytest.param({"email": "a\x00@example.com", "password": "secret-password"}, id="email"),
        pytest.param({"email": "a@example.com", "password": "pass\x00word"}, id="password"),
    ],
)
async def test_nul_in_login_is_a_422_not_a_500(
    client: QuartClient, path: str, credentials: dict[str, str]
) -> None:
    # Found as a 500: the NUL went into the SELECT and PostgreSQL refused it.
    response = await client.post(path, json={"user": credentials})

    assert response.status_code == 422
    errors = (await response.get_json())["errors"]
    field = "email" if "\x00" in credentials["email"] else "password"
    assert errors[field] == ["must not contain NUL characters"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/profiles/a%00b",
        "/api/articles/a%00b",
        "/api/articles/a%00b/comments",
        "/exports/a%00b",
        "/exports/a%00b/download",
    ],
)
async def test_nul_in_a_path_segment_is_a_404(client: QuartClient, path: str) -> None:
    # Found as a 500 under /api: a slug or username with a NUL went into a query.
    response = await client.get(path)

    assert response.status_code == 404
    body = await response.get_json()
    if path.startswith("/api/"):
        assert body == {"errors": {"body": ["not found"]}}
    else:
        assert body["error"]["status"] == 404


async def test_a_value_the_database_refuses_is_a_422(clean_tables: None) -> None:
    # The same NUL failure anywhere else: PostgreSQL's data exceptions (SQLSTATE class 22)
    # arrive from asyncpg as plain driver errors and were answered 500.
    app = create_app(make_settings())

    @app.get("/echo/<value>")
    async def echo(value: str) -> dict[str, str]:
        async with reading() as connection:
            await connection.execute(text("SELECT CAST(:value AS text)"), {"value": "a\x00b"})
        return {"value": value}

    async with app.test_app():
        response = await app.test_client().get("/echo/x")

    assert response.status_code == 422
    assert (await response.get_json())["error"]["message"] == "a value cannot be stored"


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("path", ["/items/0", "/items/2147483648", "/todos/99999999999"])
async def test_an_id_out_of_range_is_a_404_for_every_method(
    client: QuartClient, session: AsyncSession, method: str, path: str
) -> None:
    # Found as a 405 with an Allow header naming the other methods: werkzeug checks the
    # method of the path's other rules before their converters refuse the id.
    item = await make_item(session)
    body = {"name": "x", "description": None, "quantity": 1, "price": 1.0}
    if path.startswith("/todos"):
        body = {"task": "x", "done": True}

    response = await client.open(path, method=method, json=body)

    assert response.status_code == 404
    assert "Allow" not in response.headers
    assert (await response.get_json())["error"]["message"] == "not found"
    stored = (await session.execute(select(Item.__table__))).mappings().all()
    assert [(row["id"], row["name"]) for row in stored] == [(item.id, item.name)]
    assert (await session.execute(select(Todo.__table__))).all() == []


@pytest.mark.parametrize(
    ("quantity", "status"),
    [(3.0, 201), (0.0, 201), (3.5, 422), (-1.0, 422), (2147483648.0, 422), (True, 422)],
)
async def test_an_integral_float_is_an_integer(
    client: QuartClient, session: AsyncSession, quantity: float, status: int
) -> None:
    # Found as "schema-valid request rejected": JSON Schema's integer includes 3.0 (JSON
    # has one number type), strict pydantic refused it.
    response = await client.post("/items", json={"name": "counted", "quantity": quantity})

    assert response.status_code == status
    stored = (await session.execute(select(Item.__table__.c.quantity))).scalars().all()
    assert stored == ([int(quantity)] if status == 201 else [])
    if status == 201:
        assert json.loads(await response.get_data())["quantity"] == int(quantity)


async def test_an_internationalised_email_is_documented_and_accepted(client: QuartClient) -> None:
    # Found as "schema-violating request accepted": the document said `format: email`,
    # which rules out an address like this one, and the service took it.
    document = await openapi(client)
    body = document["paths"]["/api/users"]["post"]["requestBody"]["content"]["application/json"]
    enveloped = body["schema"]["anyOf"][0]
    assert enveloped["properties"]["user"]["properties"]["email"]["format"] == "idn-email"

    user = {"username": "kenji", "email": "Kenji@例え.jp", "password": "long enough"}
    response = await client.post("/api/users", json={"user": user})

    assert response.status_code == 201
    assert (await response.get_json())["user"]["email"] == "kenji@例え.jp"
