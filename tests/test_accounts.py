"""Accounts: usernames unique whatever their case, which passwords are refused, and
passwords compared in one Unicode form (NFKC) with older hashes still verifying."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from typing import Any

import asyncpg
import pytest
from alembic import command
from alembic.config import Config
from argon2 import PasswordHasher
from quart import Quart
from quart.testing import QuartClient
from quart.wrappers import Response
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from service.__main__ import PROJECT_ROOT
from service.users.models import User
from tests.conftest import TestServers
from tests.factories import FACTORY_PASSWORD, auth_headers, make_user

GOOD_PASSWORD = "plum tree in may"
REGISTER_STATUS_WHEN_TAKEN = {"/api/users": 422, "/api/register": 409}


def registration(username: str, email: str, password: str = GOOD_PASSWORD) -> dict[str, Any]:
    return {"user": {"username": username, "email": email, "password": password}}


async def field_errors(response: Response) -> dict[str, list[str]]:
    body = await response.get_json()
    assert set(body) == {"errors"}, body
    return body["errors"]


async def users_named(session: AsyncSession, name: str) -> list[str]:
    session.expire_all()
    rows = await session.scalars(select(User.username).where(func.lower(User.username) == name))
    return sorted(rows)


def fullwidth(text: str) -> str:
    """The fullwidth forms a CJK keyboard types (U+FF01-FF5E, and U+3000 for a space)."""
    return "".join("\u3000" if char == " " else chr(ord(char) + 0xFEE0) for char in text)


async def login(client: QuartClient, email: str, password: str) -> Response:
    return await client.post(
        "/api/users/login", json={"user": {"email": email, "password": password}}
    )


# --- usernames ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", REGISTER_STATUS_WHEN_TAKEN)
@pytest.mark.parametrize("variant", ["race1", "RACE1", "Race1"])
async def test_registering_a_case_variant_of_a_taken_username_is_refused(
    client: QuartClient, session: AsyncSession, path: str, variant: str
) -> None:
    await make_user(session, username="Race1")

    response = await client.post(path, json=registration(variant, "new@example.com"))

    assert response.status_code == REGISTER_STATUS_WHEN_TAKEN[path]
    errors = await field_errors(response)
    assert set(errors) == {"body", "username"}, errors
    assert errors["username"] == ["has already been taken"]
    assert await users_named(session, "race1") == ["Race1"]


async def test_renaming_to_a_case_variant_of_another_users_name_is_422(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    await make_user(session, username="Race1")
    user = await make_user(session, username="runner")

    response = await client.put(
        "/api/user", json={"user": {"username": "RACE1"}}, headers=auth_headers(app, user)
    )

    assert response.status_code == 422
    errors = await field_errors(response)
    assert set(errors) == {"body", "username"}, errors
    assert errors["username"] == ["has already been taken"]
    assert await users_named(session, "race1") == ["Race1"]


async def test_a_user_may_change_the_case_of_their_own_name(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    user = await make_user(session, username="Race1")

    response = await client.put(
        "/api/user", json={"user": {"username": "RACE1"}}, headers=auth_headers(app, user)
    )

    assert response.status_code == 200, await response.get_data()
    assert await users_named(session, "race1") == ["RACE1"]


async def test_profiles_are_found_by_the_exact_stored_name(
    client: QuartClient, session: AsyncSession
) -> None:
    await make_user(session, username="Race1")

    exact = await client.get("/api/profiles/Race1")
    other_case = await client.get("/api/profiles/race1")

    assert exact.status_code == 200
    assert (await exact.get_json())["profile"]["username"] == "Race1"
    assert other_case.status_code == 404


async def test_the_database_refuses_a_case_variant_by_itself(session: AsyncSession) -> None:
    """The unique index on lower(username): whatever a route checks or misses."""
    await make_user(session, username="Race1")

    session.add(User(username="rACE1", email="other@example.com", password_hash="x"))
    with pytest.raises(IntegrityError, match="uq_users_username_lower"):
        await session.commit()
    await session.rollback()


async def test_case_variants_registered_at_once_make_one_user(
    client: QuartClient, session: AsyncSession
) -> None:
    """Past the check, the index decides; the losers get the same answer as a check's."""
    names = ["Race1", "race1", "RACE1", "rAcE1"] * 3

    responses = await asyncio.gather(
        *(
            client.post("/api/users", json=registration(name, f"racer{n}@example.com"))
            for n, name in enumerate(names)
        )
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] + [422] * (len(names) - 1)
    for response in responses:
        if response.status_code == 422:
            assert set(await field_errors(response)) == {"body", "username"}
    assert len(await users_named(session, "race1")) == 1


async def test_the_migration_stops_on_names_that_differ_only_in_case() -> None:
    """A database at 0003 with `Race1`/`race1`/`RACE1` and `Bob`/`bob`: upgrading names
    them and changes nothing, so a person can rename the users and migrate again."""
    name = f"{TestServers.database_name}_collide_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(TestServers.admin_url, timeout=5)
    await admin.execute(f'CREATE DATABASE "{name}"')
    plain_url = TestServers.admin_url.rsplit("/", 1)[0] + f"/{name}"
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["database_url"] = TestServers.database_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        await asyncio.to_thread(command.upgrade, config, "0003")
        database = await asyncpg.connect(plain_url, timeout=5)
        try:
            await database.executemany(
                "INSERT INTO users (username, email, password_hash) VALUES ($1, $2, 'x')",
                [
                    (user, f"{n}@example.com")
                    for n, user in enumerate(["Race1", "race1", "RACE1", "Bob", "bob", "carol"])
                ],
            )
            with pytest.raises(RuntimeError) as refused:
                await asyncio.to_thread(command.upgrade, config, "head")
            version = await database.fetchval("SELECT version_num FROM alembic_version")
            columns = await database.fetch(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'users' AND column_name = 'token_version'"
            )
        finally:
            await database.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

    message = str(refused.value)
    assert type(refused.value).__name__ == "UsernameCollision"
    assert "'race1' (3 users)" in message and "'bob' (2 users)" in message
    assert "carol" not in message
    assert "migrate again" in message
    assert (version, columns) == ("0003", [])


# --- password rules ----------------------------------------------------------------------

EMAIL, USERNAME = "jake.doe@example.com", "jakedoe77"
REFUSED = [
    pytest.param(" " * 8, "must not be only spaces", id="8 spaces"),
    pytest.param("\u3000" * 8, "must not be only spaces", id="ideographic spaces"),
    pytest.param("password", "is too common", id="password"),
    pytest.param("12345678", "is too common", id="12345678"),
    pytest.param("Qwertyuiop", "is too common", id="common, other case"),
    pytest.param(fullwidth("password"), "is too common", id="common, fullwidth"),
    pytest.param("JAKE.DOE@example.com", "must not be your email or username", id="email"),
    pytest.param("Jake.Doe", "must not be your email or username", id="email local part"),
    pytest.param("JakeDoe77", "must not be your email or username", id="username"),
]


@pytest.mark.parametrize("path", REGISTER_STATUS_WHEN_TAKEN)
@pytest.mark.parametrize(("password", "reason"), REFUSED)
async def test_registering_with_a_weak_password_is_422_naming_password(
    client: QuartClient, session: AsyncSession, path: str, password: str, reason: str
) -> None:
    response = await client.post(path, json=registration(USERNAME, EMAIL, password))

    assert response.status_code == 422
    errors = await field_errors(response)
    assert set(errors) == {"body", "password"}
    assert errors["password"][0].startswith(reason), errors
    assert await users_named(session, USERNAME) == []


@pytest.mark.parametrize("path", REGISTER_STATUS_WHEN_TAKEN)
async def test_registering_with_a_good_password_works(
    client: QuartClient, session: AsyncSession, path: str
) -> None:
    response = await client.post(path, json=registration(USERNAME, EMAIL, GOOD_PASSWORD))

    assert response.status_code == 201, await response.get_data()
    assert (await login(client, EMAIL, GOOD_PASSWORD)).status_code == 200


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"password": "12345678"}, "is too common"),
        ({"password": " " * 9}, "must not be only spaces"),
        ({"password": "JAKEDOE77"}, "must not be your email or username"),
        # Against the email and username the account will have after the change.
        ({"password": "new.name.1", "username": "new.name.1"}, "must not be your email"),
        ({"password": "fresh@example.com", "email": "fresh@example.com"}, "must not be your"),
    ],
    ids=["common", "spaces", "username", "new username", "new email"],
)
async def test_changing_to_a_weak_password_is_422_and_changes_nothing(
    app: Quart, client: QuartClient, session: AsyncSession, change: dict[str, str], reason: str
) -> None:
    user = await make_user(session, username=USERNAME, email=EMAIL)
    user_id, before = user.id, (user.username, user.email, user.password_hash)

    response = await client.put("/api/user", json={"user": change}, headers=auth_headers(app, user))

    assert response.status_code == 422
    errors = await field_errors(response)
    assert set(errors) == {"body", "password"}
    assert errors["password"][0].startswith(reason), errors
    session.expire_all()
    stored = await session.get(User, user_id)
    assert stored is not None and (stored.username, stored.email, stored.password_hash) == before


# --- one Unicode form --------------------------------------------------------------------


async def test_a_password_is_the_same_whichever_unicode_form_is_typed(
    client: QuartClient, session: AsyncSession
) -> None:
    """Registered in fullwidth letters (a CJK keyboard's), logged in with their ASCII
    NFKC equivalents, and the other way round."""
    ascii_form = "plum tree in may"
    wide = fullwidth(ascii_form)
    registered = await client.post("/api/users", json=registration("wide", "wide@x.org", wide))
    assert registered.status_code == 201, await registered.get_data()
    other = await client.post("/api/users", json=registration("narrow", "narrow@x.org", ascii_form))
    assert other.status_code == 201, await other.get_data()

    assert (await login(client, "wide@x.org", ascii_form)).status_code == 200
    assert (await login(client, "wide@x.org", wide)).status_code == 200
    assert (await login(client, "narrow@x.org", wide)).status_code == 200
    assert (await login(client, "wide@x.org", "plum tree in june")).status_code == 401


async def test_a_hash_made_before_normalising_still_verifies(
    client: QuartClient, session: AsyncSession
) -> None:
    """A password stored as typed, not NFKC (how every hash was made before)."""
    typed = "ﬁne ﬂower Ⅸ"  # ligatures and a roman numeral: NFKC makes "fine flower IX"
    user = await make_user(session, password_hash=PasswordHasher().hash(typed))

    assert (await login(client, user.email, typed)).status_code == 200
    assert (await login(client, user.email, FACTORY_PASSWORD)).status_code == 401


def test_the_served_app_holds_zxcvbns_list_but_not_its_matchers() -> None:
    """Importing the zxcvbn package builds all its matchers (17 MB a process), which cost
    served workers about 10% more CPU per request (measured with wrk): only its list of
    common passwords is loaded, and all of it."""
    code = (
        "import sys; from service.app import create_app; "
        "from service.users.passwords import COMMON_PASSWORDS; "
        "print(len(COMMON_PASSWORDS), sorted(m for m in sys.modules if 'zxcvbn' in m))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.split(maxsplit=1) == ["30000", "[]\n"]
