"""Users, JWT auth and profiles: RealWorld (/api/users, /api/user, /api/profiles) and seed."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import statistics
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from jwt.warnings import InsecureKeyLengthWarning
from quart import Quart
from quart.testing import QuartClient
from quart.wrappers import Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.app import create_app
from service.users.models import Follow, RevokedToken, User
from tests.conftest import make_settings
from tests.factories import FACTORY_PASSWORD, auth_headers, make_user, token_for

PASSWORD = "s3cret-Passw0rd"
JSON_HEADERS = {"Content-Type": "application/json"}
USER_KEYS = {"email", "token", "username", "bio", "image"}
PROFILE_KEYS = {"username", "bio", "image", "following"}


# --- helpers ----------------------------------------------------------------------------


def secret_of(app: Quart) -> str:
    return app.extensions["settings"].secret_key.get_secret_value()


def claims_of(app: Quart, token: str) -> dict[str, Any]:
    return jwt.decode(token, secret_of(app), algorithms=["HS256"])


def token_header(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}"}


def b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def count(session: AsyncSession, model: type) -> int:
    return await session.scalar(select(func.count()).select_from(model)) or 0


async def stored_user(session: AsyncSession, user_id: int) -> User:
    session.expire_all()
    user = await session.get(User, user_id)
    assert user is not None
    return user


async def realworld_errors(response: Response) -> dict[str, list[str]]:
    """The RealWorld error object, after checking the shape {"errors": {"body": [...], ...}}."""
    body = await response.get_json()
    assert set(body) == {"errors"}, body
    errors = body["errors"]
    assert isinstance(errors["body"], list) and errors["body"]
    return errors


async def register(client: QuartClient, **fields: Any) -> Response:
    user = {"username": "jake", "email": "jake@example.com", "password": PASSWORD}
    user.update(fields)
    return await client.post("/api/users", json={"user": user})


async def login(
    client: QuartClient,
    email: str,
    password: str = FACTORY_PASSWORD,
    path: str = "/api/users/login",
) -> Response:
    return await client.post(path, json={"user": {"email": email, "password": password}})


async def login_token(client: QuartClient, user: User) -> str:
    response = await login(client, user.email)
    assert response.status_code == 200
    return (await response.get_json())["user"]["token"]


async def me(client: QuartClient, token: str) -> Response:
    return await client.get("/api/user", headers=token_header(token))


# --- register (RealWorld) ---------------------------------------------------------------


async def test_register_returns_the_user_with_a_token(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    response = await register(client, email="Jake@Example.COM")

    assert response.status_code == 201
    body = await response.get_json()
    assert set(body) == {"user"}
    assert set(body["user"]) == USER_KEYS
    assert body["user"]["email"] == "jake@example.com"
    assert body["user"]["username"] == "jake"
    assert body["user"]["bio"] is None and body["user"]["image"] is None
    user_id = int(claims_of(app, body["user"]["token"])["sub"])
    stored = await stored_user(session, user_id)
    assert stored.email == "jake@example.com" and stored.username == "jake"


async def test_register_stores_an_argon2_hash_never_returned(
    client: QuartClient, session: AsyncSession
) -> None:
    response = await register(client)

    assert PASSWORD.encode() not in await response.get_data()
    stored = await session.scalar(select(User).where(User.username == "jake"))
    assert stored is not None
    assert stored.password_hash.startswith("$argon2")
    assert PASSWORD not in stored.password_hash
    assert stored.password_hash.encode() not in await response.get_data()


async def test_register_accepts_a_flat_body(client: QuartClient, session: AsyncSession) -> None:
    response = await client.post(
        "/api/users", json={"username": "flat", "email": "flat@example.com", "password": PASSWORD}
    )

    assert response.status_code == 201
    assert (await response.get_json())["user"]["username"] == "flat"
    assert await count(session, User) == 1


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"email": "TAKEN@example.com"}, "email"),
        ({"email": "taken@example.com"}, "email"),
        ({"username": "taken"}, "username"),
    ],
    ids=["email other case", "email", "username"],
)
async def test_register_taken_email_or_username_is_422(
    client: QuartClient, session: AsyncSession, fields: dict[str, str], field: str
) -> None:
    await make_user(session, username="taken", email="taken@example.com")

    response = await register(client, **fields)

    assert response.status_code == 422
    errors = await realworld_errors(response)
    assert errors[field] == ["has already been taken"]
    assert await count(session, User) == 1


@pytest.mark.parametrize(
    ("user", "fields"),
    [
        pytest.param({"email": "not-an-email"}, {"email"}, id="invalid email"),
        pytest.param({"password": "short7!"}, {"password"}, id="short password"),
        pytest.param({"username": ""}, {"username"}, id="empty username"),
        pytest.param(
            {"username": None, "email": None, "password": None},
            {"username", "email", "password"},
            id="null fields",
        ),
    ],
)
async def test_register_invalid_fields_are_422_per_field(
    client: QuartClient, session: AsyncSession, user: dict[str, Any], fields: set[str]
) -> None:
    body = {"username": "jake", "email": "jake@example.com", "password": PASSWORD}
    body.update(user)

    response = await client.post("/api/users", json={"user": body})

    assert response.status_code == 422
    errors = await realworld_errors(response)
    assert set(errors) - {"body"} == fields
    assert await count(session, User) == 0


async def test_register_missing_fields_are_422_per_field(
    client: QuartClient, session: AsyncSession
) -> None:
    response = await client.post("/api/users", json={"user": {}})

    assert response.status_code == 422
    errors = await realworld_errors(response)
    assert set(errors) == {"body", "username", "email", "password"}
    assert await count(session, User) == 0


async def test_register_malformed_json_is_400_realworld(
    client: QuartClient, session: AsyncSession
) -> None:
    response = await client.post("/api/users", data=b'{"user": {', headers=JSON_HEADERS)

    assert response.status_code == 400
    errors = await realworld_errors(response)
    assert set(errors) == {"body"}
    assert await count(session, User) == 0


# --- register (seed) --------------------------------------------------------------------


@pytest.mark.parametrize("enveloped", [False, True], ids=["flat", "envelope"])
async def test_seed_register_returns_user_and_top_level_token(
    client: QuartClient, session: AsyncSession, enveloped: bool
) -> None:
    user = {"username": "seed", "email": "Seed@example.com", "password": PASSWORD}

    response = await client.post("/api/register", json={"user": user} if enveloped else user)

    assert response.status_code == 201
    body = await response.get_json()
    assert set(body) == {"user", "token"}
    assert set(body["user"]) == USER_KEYS
    assert body["token"] == body["user"]["token"]
    assert body["user"]["email"] == "seed@example.com"
    assert await count(session, User) == 1


async def test_seed_register_taken_email_is_409(client: QuartClient, session: AsyncSession) -> None:
    await make_user(session, email="seed@example.com")

    response = await client.post(
        "/api/register",
        json={"username": "other", "email": "SEED@example.com", "password": PASSWORD},
    )

    assert response.status_code == 409
    assert await count(session, User) == 1


# --- login ------------------------------------------------------------------------------


async def test_login_returns_a_working_token(client: QuartClient, session: AsyncSession) -> None:
    user = await make_user(session)

    response = await login(client, user.email)

    assert response.status_code == 200
    body = await response.get_json()
    assert set(body) == {"user"} and set(body["user"]) == USER_KEYS
    assert body["user"]["username"] == user.username
    current = await me(client, body["user"]["token"])
    assert current.status_code == 200
    assert (await current.get_json())["user"]["username"] == user.username


async def test_seed_login_returns_a_top_level_token(
    client: QuartClient, session: AsyncSession
) -> None:
    user = await make_user(session)

    response = await client.post(
        "/api/login", json={"email": user.email, "password": FACTORY_PASSWORD}
    )

    assert response.status_code == 200
    body = await response.get_json()
    assert set(body) == {"user", "token"}
    assert body["token"] == body["user"]["token"]
    assert (await me(client, body["token"])).status_code == 200


@pytest.mark.parametrize("path", ["/api/users/login", "/api/login"])
async def test_wrong_password_and_unknown_email_are_the_same_401(
    client: QuartClient, session: AsyncSession, path: str
) -> None:
    user = await make_user(session)

    wrong_password = await login(client, user.email, "wrong password!", path=path)
    unknown_email = await login(client, "nobody@example.com", FACTORY_PASSWORD, path=path)

    assert wrong_password.status_code == unknown_email.status_code == 401
    assert await wrong_password.get_json() == await unknown_email.get_json()
    assert set(await realworld_errors(wrong_password)) == {"body"}


@pytest.mark.parametrize("path", ["/api/users/login", "/api/login"])
async def test_login_email_is_case_insensitive(
    client: QuartClient, session: AsyncSession, path: str
) -> None:
    user = await make_user(session, email="mixed@example.com")

    response = await login(client, "MiXeD@Example.com", path=path)

    assert response.status_code == 200
    assert (await response.get_json())["user"]["username"] == user.username


async def test_unknown_email_login_takes_about_as_long_as_a_wrong_password(
    client: QuartClient, session: AsyncSession
) -> None:
    """Within 20%, on medians of interleaved tries (so that load on the machine falls on
    both alike). Skipping the hash for an unknown email would make it ~50 times faster."""
    user = await make_user(session)
    durations: dict[str, list[float]] = {user.email: [], "nobody@example.com": []}

    await login(client, user.email, "warm-up")
    for _ in range(9):
        for email, measured in durations.items():
            started = time.perf_counter()
            response = await login(client, email, "wrong password!")
            measured.append(time.perf_counter() - started)
            assert response.status_code == 401
    wrong_password = statistics.median(durations[user.email])
    unknown_email = statistics.median(durations["nobody@example.com"])

    assert abs(unknown_email - wrong_password) <= 0.2 * wrong_password, (
        wrong_password,
        unknown_email,
    )


# --- the current user -------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Token", "Bearer"])
async def test_current_user_with_token_or_bearer(
    app: Quart, client: QuartClient, session: AsyncSession, scheme: str
) -> None:
    user = await make_user(session, bio="hello")
    token = token_for(app, user)

    response = await client.get("/api/user", headers={"Authorization": f"{scheme} {token}"})

    assert response.status_code == 200
    assert await response.get_json() == {
        "user": {
            "email": user.email,
            "token": token,
            "username": user.username,
            "bio": "hello",
            "image": None,
        }
    }


async def test_current_user_with_trailing_slash(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    user = await make_user(session)

    response = await client.get("/api/user/", headers=auth_headers(app, user))

    assert response.status_code == 200
    assert (await response.get_json())["user"]["username"] == user.username


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic xyz"}, {"Authorization": "Token"}, {"Authorization": ""}],
    ids=["no header", "basic", "scheme only", "empty"],
)
async def test_current_user_without_a_token_is_401(
    client: QuartClient, headers: dict[str, str]
) -> None:
    response = await client.get("/api/user", headers=headers)

    assert response.status_code == 401
    await realworld_errors(response)


# --- token attacks ----------------------------------------------------------------------


def tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    middle = len(payload) // 2
    swapped = "A" if payload[middle] != "A" else "B"
    return ".".join([header, payload[:middle] + swapped + payload[middle + 1 :], signature])


def signed(claims: dict[str, Any], secret: str, algorithm: str = "HS256") -> str:
    with warnings.catch_warnings():  # PyJWT warns when a key is short for HS512
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(claims, secret, algorithm=algorithm)


def fresh_claims(user_id: int | str, **changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "jti": "attack",
        "iat": now,
        "exp": now + timedelta(hours=1),
    }
    claims.update(changes)
    return {key: value for key, value in claims.items() if value is not None}


_KEY_DIRECTORY = tempfile.TemporaryDirectory(prefix="test-rsa-")  # removed at exit


@functools.cache
def rsa_key() -> tuple[Path, bytes]:
    """A fresh 2048-bit RSA key: its private key file and its public key's PEM. Made by
    openssl: PyJWT signs RS256 only with `cryptography`, which the service does not need."""
    key_file = Path(_KEY_DIRECTORY.name) / "key.pem"
    generate = ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]
    subprocess.run([*generate, "-out", str(key_file)], check=True, capture_output=True)
    public = subprocess.run(
        ["openssl", "pkey", "-in", str(key_file), "-pubout"], check=True, capture_output=True
    )
    return key_file, public.stdout


def hand_signed(algorithm: str, user_id: int, sign: Callable[[bytes], bytes]) -> str:
    now = int(time.time())
    claims = {"sub": str(user_id), "jti": "attack", "iat": now, "exp": now + 3600}
    signing_input = f"{b64url({'alg': algorithm, 'typ': 'JWT'})}.{b64url(claims)}"
    signature = base64.urlsafe_b64encode(sign(signing_input.encode())).rstrip(b"=").decode()
    return f"{signing_input}.{signature}"


def rs256_signature(data: bytes) -> bytes:
    key_file, _ = rsa_key()
    command = ["openssl", "dgst", "-sha256", "-sign", str(key_file)]
    return subprocess.run(command, input=data, check=True, capture_output=True).stdout


def hs256_over_the_public_key(data: bytes) -> bytes:
    """The key confusion attack: HS256 with the RSA public key (which is public) as the
    secret, against a server that would verify HS256 and RS256 with one key."""
    _, public_pem = rsa_key()
    return hmac.new(public_pem, data, hashlib.sha256).digest()


REVOKED_JTI = "revoked-in-the-table"
ATTACKS: dict[str, Callable[[Quart, User], str]] = {
    "tampered payload": lambda app, user: tampered(token_for(app, user)),
    "other secret": lambda app, user: signed(fresh_claims(user.id), "not-the-secret" * 3),
    "expired": lambda app, user: signed(
        {"sub": str(user.id), "jti": "x", "exp": datetime.now(UTC) - timedelta(minutes=5)},
        secret_of(app),
    ),
    "alg none": lambda app, user: (
        f"{b64url({'alg': 'none', 'typ': 'JWT'})}."
        f"{b64url({'sub': str(user.id), 'jti': 'x', 'exp': int(time.time()) + 3600})}."
    ),
    "HS512": lambda app, user: signed(fresh_claims(user.id), secret_of(app), "HS512"),
    "no jti": lambda app, user: signed(fresh_claims(user.id, jti=None), secret_of(app)),
    "sub not a number": lambda app, user: signed(fresh_claims("admin"), secret_of(app)),
    "unknown user": lambda app, user: signed(fresh_claims(user.id + 100_000), secret_of(app)),
    "RS256": lambda app, user: hand_signed("RS256", user.id, rs256_signature),
    "HS256 over an RSA public key": lambda app, user: hand_signed(
        "HS256", user.id, hs256_over_the_public_key
    ),
    "not valid before (nbf) an hour from now": lambda app, user: signed(
        fresh_claims(user.id, nbf=datetime.now(UTC) + timedelta(hours=1)), secret_of(app)
    ),
    "issued (iat) an hour from now": lambda app, user: signed(
        fresh_claims(user.id, iat=datetime.now(UTC) + timedelta(hours=1)), secret_of(app)
    ),
    "revoked": lambda app, user: signed(fresh_claims(user.id, jti=REVOKED_JTI), secret_of(app)),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_forged_tokens_are_401(
    app: Quart, client: QuartClient, session: AsyncSession, attack: str
) -> None:
    user = await make_user(session)
    session.add(RevokedToken(jti=REVOKED_JTI, expires_at=datetime.now(UTC) + timedelta(hours=1)))
    await session.commit()
    token = ATTACKS[attack](app, user)

    response = await me(client, token)

    assert response.status_code == 401
    await realworld_errors(response)


async def test_a_hand_made_valid_token_is_accepted(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    """The attack tokens above differ from this accepted one in one respect each."""
    user = await make_user(session)

    assert (await me(client, signed(fresh_claims(user.id), secret_of(app)))).status_code == 200


async def test_token_claims(app: Quart, client: QuartClient, session: AsyncSession) -> None:
    user = await make_user(session)

    first = claims_of(app, await login_token(client, user))
    second = claims_of(app, await login_token(client, user))

    assert first["sub"] == str(user.id)
    assert first["jti"] and second["jti"] and first["jti"] != second["jti"]
    assert abs(first["exp"] - first["iat"] - 86400) <= 1
    assert abs(first["iat"] - time.time()) < 60


# --- logout -----------------------------------------------------------------------------


async def test_logout_revokes_only_that_token(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    token = await login_token(client, user)
    other_token = await login_token(client, user)

    response = await client.post("/api/logout", headers=token_header(token))

    assert response.status_code == 200
    assert (await me(client, token)).status_code == 401
    assert (await client.post("/api/logout", headers=token_header(token))).status_code == 401
    assert (await me(client, other_token)).status_code == 200
    revoked = await session.get(RevokedToken, claims_of(app, token)["jti"])
    assert revoked is not None
    assert revoked.expires_at == datetime.fromtimestamp(claims_of(app, token)["exp"], tz=UTC)


async def test_logout_purges_expired_revocations(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    session.add(RevokedToken(jti="old", expires_at=datetime.now(UTC) - timedelta(hours=1)))
    await session.commit()
    token = token_for(app, user)

    assert (await client.post("/api/logout", headers=token_header(token))).status_code == 200

    session.expire_all()
    jtis = set(await session.scalars(select(RevokedToken.jti)))
    assert jtis == {claims_of(app, token)["jti"]}


async def test_logout_is_seen_by_another_app(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    token = token_for(app, user)
    other = create_app(make_settings())

    async with other.test_app():
        other_client = other.test_client()
        assert (await me(other_client, token)).status_code == 200
        assert (await client.post("/api/logout", headers=token_header(token))).status_code == 200
        assert (await me(other_client, token)).status_code == 401


# --- update the current user ------------------------------------------------------------


async def test_update_bio_and_image_changes_only_them(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    before = (user.email, user.username, user.password_hash)

    response = await client.put(
        "/api/user",
        json={"user": {"bio": "I like to skateboard", "image": "https://i.example/jake.jpg"}},
        headers=auth_headers(app, user),
    )

    assert response.status_code == 200
    body = (await response.get_json())["user"]
    assert set(body) == USER_KEYS
    assert body["bio"] == "I like to skateboard"
    assert body["image"] == "https://i.example/jake.jpg"
    stored = await stored_user(session, user.id)
    assert (stored.bio, stored.image) == ("I like to skateboard", "https://i.example/jake.jpg")
    assert (stored.email, stored.username, stored.password_hash) == before


async def test_update_username_and_email(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    user = await make_user(session, bio="kept")

    response = await client.put(
        "/api/user",
        json={"user": {"username": "renamed", "email": "New@Example.com"}},
        headers=auth_headers(app, user),
    )

    assert response.status_code == 200
    body = (await response.get_json())["user"]
    assert (body["username"], body["email"], body["bio"]) == ("renamed", "new@example.com", "kept")
    stored = await stored_user(session, user.id)
    assert (stored.username, stored.email, stored.bio) == ("renamed", "new@example.com", "kept")


async def test_update_password(app: Quart, client: QuartClient, session: AsyncSession) -> None:
    user = await make_user(session)

    response = await client.put(
        "/api/user", json={"user": {"password": "brand new pass"}}, headers=auth_headers(app, user)
    )

    assert response.status_code == 200
    assert b"brand new pass" not in await response.get_data()
    assert (await login(client, user.email, FACTORY_PASSWORD)).status_code == 401
    assert (await login(client, user.email, "brand new pass")).status_code == 200
    assert (await stored_user(session, user.id)).password_hash.startswith("$argon2")


@pytest.mark.parametrize("cleared", [None, ""], ids=["null", "empty"])
async def test_update_clears_bio_and_image(
    app: Quart, client: QuartClient, session: AsyncSession, cleared: str | None
) -> None:
    user = await make_user(session, bio="old bio", image="https://i.example/old.jpg")

    response = await client.put(
        "/api/user",
        json={"user": {"bio": cleared, "image": cleared}},
        headers=auth_headers(app, user),
    )

    assert response.status_code == 200
    body = (await response.get_json())["user"]
    assert body["bio"] is None and body["image"] is None
    stored = await stored_user(session, user.id)
    assert stored.bio is None and stored.image is None


@pytest.mark.parametrize(
    ("change", "field"),
    [({"email": "OTHER@example.com"}, "email"), ({"username": "other"}, "username")],
    ids=["email", "username"],
)
async def test_update_to_a_taken_email_or_username_is_422(
    app: Quart, client: QuartClient, session: AsyncSession, change: dict[str, str], field: str
) -> None:
    await make_user(session, username="other", email="other@example.com")
    user = await make_user(session, bio="unchanged")
    before = (user.email, user.username)

    response = await client.put(
        "/api/user", json={"user": {**change, "bio": "changed"}}, headers=auth_headers(app, user)
    )

    assert response.status_code == 422
    assert (await realworld_errors(response))[field] == ["has already been taken"]
    stored = await stored_user(session, user.id)
    assert (stored.email, stored.username, stored.bio) == (*before, "unchanged")


async def test_update_keeping_own_email_and_username_is_fine(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    user = await make_user(session)

    response = await client.put(
        "/api/user",
        json={"user": {"email": user.email, "username": user.username, "bio": "same me"}},
        headers=auth_headers(app, user),
    )

    assert response.status_code == 200
    assert (await stored_user(session, user.id)).bio == "same me"


async def test_update_without_token_is_401(client: QuartClient, session: AsyncSession) -> None:
    user = await make_user(session)

    response = await client.put("/api/user", json={"user": {"bio": "hacked"}})

    assert response.status_code == 401
    assert (await stored_user(session, user.id)).bio is None


async def test_update_ignores_unknown_fields(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    token = token_for(app, user)

    response = await client.put(
        "/api/user",
        json={"user": {"bio": "new", "token": "forged", "id": 999, "createdAt": "x"}},
        headers=token_header(token),
    )

    assert response.status_code == 200
    body = (await response.get_json())["user"]
    assert body["token"] == token and body["bio"] == "new"
    stored = await stored_user(session, user.id)
    assert stored.id == user.id and stored.bio == "new"


# --- profiles ---------------------------------------------------------------------------


async def test_get_profile_anonymously(client: QuartClient, session: AsyncSession) -> None:
    user = await make_user(session, bio="bio", image="https://i.example/a.png")

    response = await client.get(f"/api/profiles/{user.username}")

    assert response.status_code == 200
    assert await response.get_json() == {
        "profile": {
            "username": user.username,
            "bio": "bio",
            "image": "https://i.example/a.png",
            "following": False,
        }
    }


async def test_unknown_profile_is_404(client: QuartClient) -> None:
    response = await client.get("/api/profiles/nobody")

    assert response.status_code == 404
    await realworld_errors(response)


async def test_follow_and_unfollow(app: Quart, client: QuartClient, session: AsyncSession) -> None:
    follower = await make_user(session)
    followed = await make_user(session)
    headers = auth_headers(app, follower)
    path = f"/api/profiles/{followed.username}/follow"

    response = await client.post(path, headers=headers)

    assert response.status_code == 200
    body = await response.get_json()
    assert set(body) == {"profile"} and set(body["profile"]) == PROFILE_KEYS
    assert body["profile"]["following"] is True
    assert body["profile"]["username"] == followed.username
    assert (await client.post(path, headers=headers)).status_code == 200
    rows = (await session.execute(select(Follow.follower_id, Follow.followed_id))).all()
    assert [tuple(row) for row in rows] == [(follower.id, followed.id)]

    profile = await client.get(f"/api/profiles/{followed.username}", headers=headers)
    assert (await profile.get_json())["profile"]["following"] is True
    anonymous = await client.get(f"/api/profiles/{followed.username}")
    assert (await anonymous.get_json())["profile"]["following"] is False

    response = await client.delete(path, headers=headers)

    assert response.status_code == 200
    assert (await response.get_json())["profile"]["following"] is False
    assert await count(session, Follow) == 0


async def test_follow_without_token_is_401(client: QuartClient, session: AsyncSession) -> None:
    followed = await make_user(session)

    response = await client.post(f"/api/profiles/{followed.username}/follow")

    assert response.status_code == 401
    assert await count(session, Follow) == 0


async def test_follow_unknown_user_is_404(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    user = await make_user(session)

    response = await client.post("/api/profiles/nobody/follow", headers=auth_headers(app, user))

    assert response.status_code == 404
    await realworld_errors(response)


async def test_follow_yourself_is_422(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    user = await make_user(session)

    response = await client.post(
        f"/api/profiles/{user.username}/follow", headers=auth_headers(app, user)
    )

    assert response.status_code == 422
    assert "username" in await realworld_errors(response)
    assert await count(session, Follow) == 0


async def test_json_content_type_with_empty_body_is_accepted(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    follower = await make_user(session)
    followed = await make_user(session)
    headers = {**auth_headers(app, follower), **JSON_HEADERS}

    follow = await client.post(f"/api/profiles/{followed.username}/follow", headers=headers)
    profile = await client.get(f"/api/profiles/{followed.username}", headers=headers)
    unfollow = await client.delete(f"/api/profiles/{followed.username}/follow", headers=headers)

    assert (follow.status_code, profile.status_code, unfollow.status_code) == (200, 200, 200)
    assert (await profile.get_json())["profile"]["following"] is True


# --- logs -------------------------------------------------------------------------------
