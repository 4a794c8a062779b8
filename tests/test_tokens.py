"""Tokens do not outlive the credentials: a password or email change revokes every earlier
token, a deleted user's token is refused everywhere, and a correctly signed token with odd
claims is the same 401 as any bad token, decided before the database is asked."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from quart import Quart
from quart.testing import QuartClient
from quart.wrappers import Response
from sqlalchemy.ext.asyncio import AsyncSession

from service.users.models import User
from service.users.schemas import IMAGE_URL_PATTERN
from tests.factories import make_user, token_for
from tests.test_articles_scale import counted_statements
from tests.test_users import claims_of, fresh_claims, login_token, me, secret_of, stored_user


def header(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}"}


async def update(client: QuartClient, token: str, **fields: Any) -> Response:
    return await client.put("/api/user", json={"user": fields}, headers=header(token))


async def feed(client: QuartClient, token: str) -> Response:
    return await client.get("/api/articles/feed", headers=header(token))


# --- a credential change revokes every earlier token ------------------------------------


@pytest.mark.parametrize(
    "change",
    [{"password": "a brand new passphrase"}, {"email": "moved@example.com"}],
    ids=["password", "email"],
)
async def test_a_credential_change_revokes_every_earlier_token(
    app: Quart, client: QuartClient, session: AsyncSession, change: dict[str, str]
) -> None:
    user = await make_user(session)
    this_device = await login_token(client, user)
    other_device = await login_token(client, user)

    response = await update(client, this_device, **change)

    assert response.status_code == 200
    fresh = (await response.get_json())["user"]["token"]
    for earlier in (this_device, other_device):
        assert (await me(client, earlier)).status_code == 401
        assert (await feed(client, earlier)).status_code == 401
    assert (await me(client, fresh)).status_code == 200
    assert (await feed(client, fresh)).status_code == 200
    assert claims_of(app, fresh)["ver"] == 1
    assert (await stored_user(session, user.id)).token_version == 1


async def test_each_change_revokes_the_token_the_last_one_gave(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    first = token_for(app, user)
    second = (await (await update(client, first, password="second passphrase")).get_json())["user"][
        "token"
    ]

    third = (await (await update(client, second, email="third@example.com")).get_json())["user"][
        "token"
    ]

    assert (await me(client, second)).status_code == 401
    assert (await me(client, third)).status_code == 200
    assert claims_of(app, third)["ver"] == 2


@pytest.mark.parametrize(
    "change",
    [
        {"bio": "new bio"},
        {"image": "https://i.example/new.png"},
        {"username": "renamed"},
        {"email": "SAME@example.com", "bio": "the settings form resends the email"},
    ],
    ids=["bio", "image", "username", "same email"],
)
async def test_other_changes_keep_the_token(
    app: Quart, client: QuartClient, session: AsyncSession, change: dict[str, str]
) -> None:
    user = await make_user(session, email="same@example.com")
    token = await login_token(client, user)

    response = await update(client, token, **change)

    assert response.status_code == 200
    assert (await response.get_json())["user"]["token"] == token
    assert (await me(client, token)).status_code == 200
    assert (await stored_user(session, user.id)).token_version == 0


async def test_a_token_without_a_version_is_version_0(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    """Tokens issued before versions existed keep working until the first change."""
    user = await make_user(session)
    unversioned = jwt.encode(fresh_claims(user.id, jti="before0versions"), secret_of(app))
    assert "ver" not in claims_of(app, unversioned)
    assert (await me(client, unversioned)).status_code == 200

    assert (await update(client, unversioned, password="a brand new passphrase")).status_code == 200

    assert (await me(client, unversioned)).status_code == 401


async def test_concurrent_changes_each_raise_the_version(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    """Both requests read version 0; raised in SQL, the second commit makes it 2, so the
    first answer's token (version 1) dies with the second change."""
    user = await make_user(session)
    token = token_for(app, user)

    answers = await asyncio.gather(
        update(client, token, password="first new passphrase"),
        update(client, token, email="second@example.com"),
    )

    assert [answer.status_code for answer in answers] == [200, 200]
    assert (await stored_user(session, user.id)).token_version == 2
    fresh = [(await answer.get_json())["user"]["token"] for answer in answers]
    working = [(await me(client, token)).status_code == 200 for token in fresh]
    assert sorted(working) == [False, True]


async def test_a_failed_change_revokes_nothing(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    taken = await make_user(session)
    user = await make_user(session)
    token = token_for(app, user)

    response = await update(client, token, email=taken.email, password="a brand new passphrase")

    assert response.status_code == 422
    assert (await me(client, token)).status_code == 200
    stored = await stored_user(session, user.id)
    assert stored.token_version == 0
    await login_token(client, stored)  # with the old password


# --- one lookup per authenticated request ------------------------------------------------


async def test_the_token_check_is_one_statement(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    token = token_for(app, user)

    with counted_statements(app) as anonymous:
        assert (await client.get("/api/articles")).status_code == 200
    with counted_statements(app) as authenticated:
        assert (await client.get("/api/articles", headers=header(token))).status_code == 200

    assert len(authenticated) == len(anonymous) + 1
    check = authenticated[0]
    assert "revoked_tokens" in check and "token_version" in check, check


# --- a deleted user's token --------------------------------------------------------------


DELETED_USER_REQUESTS = [
    ("GET", "/api/user", None),
    ("PUT", "/api/user", {"user": {"bio": "still here?"}}),
    ("GET", "/api/articles/feed", None),
    ("POST", "/api/logout", None),
    ("POST", "/api/articles", {"article": {"title": "t", "description": "d", "body": "b"}}),
    ("POST", "/api/profiles/{other}/follow", None),
    ("DELETE", "/api/profiles/{other}/follow", None),
]


@pytest.mark.parametrize(("method", "path", "body"), DELETED_USER_REQUESTS)
async def test_a_deleted_users_token_is_401_everywhere(
    app: Quart,
    client: QuartClient,
    session: AsyncSession,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    other = await make_user(session)
    user = await make_user(session)
    token = token_for(app, user)
    await session.delete(user)
    await session.commit()

    response = await client.open(
        path.format(other=other.username), method=method, json=body, headers=header(token)
    )

    assert response.status_code == 401
    assert (await response.get_json())["errors"]["body"] == ["the token's user no longer exists"]


# --- odd claims in a correctly signed token ----------------------------------------------


def in_an_hour() -> int:
    return int((datetime.now(UTC) + timedelta(hours=1)).timestamp())


ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
# Each maps the user's id to the claims that differ from a good token's.
ODD_CLAIMS: dict[str, Callable[[int], dict[str, Any]]] = {
    "exp 10**20": lambda _: {"exp": 10**20},
    "exp a numeric string": lambda _: {"exp": "9999999999"},
    "exp a float": lambda _: {"exp": in_an_hour() + 0.5},
    "sub beyond int32": lambda _: {"sub": "2147483648"},
    "sub beyond int64": lambda _: {"sub": "99999999999999999999"},
    "sub negative": lambda _: {"sub": "-1"},
    "sub zero": lambda _: {"sub": "0"},
    "sub with a leading zero": lambda user_id: {"sub": f"0{user_id}"},
    "sub in other digits": lambda user_id: {"sub": str(user_id).translate(ARABIC_INDIC)},
    "sub with spaces": lambda user_id: {"sub": f" {user_id} "},
    "sub a number": lambda user_id: {"sub": user_id},
    "jti with a NUL": lambda _: {"jti": "abc\x00def"},
    "jti empty": lambda _: {"jti": ""},
    "jti of 65 characters": lambda _: {"jti": "a" * 65},
    "jti with a space": lambda _: {"jti": "a b"},
    "jti not ASCII": lambda _: {"jti": "ünïcode"},
    "jti a number": lambda _: {"jti": 5},
    "ver a string": lambda _: {"ver": "0"},
    "ver negative": lambda _: {"ver": -1},
    "ver beyond int32": lambda _: {"ver": 2**31},
    "ver a float": lambda _: {"ver": 0.0},
    "ver true": lambda _: {"ver": True},
    "ver null": lambda _: {"ver": None},
}


def odd_token(app: Quart, user: User, odd: dict[str, Any]) -> str:
    claims: dict[str, Any] = {
        "sub": str(user.id),
        "jti": "odd",
        "iat": int(datetime.now(UTC).timestamp()),
        "exp": in_an_hour(),
    }
    claims.update(odd)
    return jwt.encode(claims, secret_of(app), algorithm="HS256")


@pytest.mark.parametrize("odd", list(ODD_CLAIMS))
async def test_odd_claims_are_the_401_of_any_bad_token_without_a_query(
    app: Quart, client: QuartClient, session: AsyncSession, odd: str
) -> None:
    user = await make_user(session)
    bad_signature = token_for(app, user)[:-2] + "AA"
    expected = await (await me(client, bad_signature)).get_json()

    with counted_statements(app) as statements:
        response = await me(client, odd_token(app, user, ODD_CLAIMS[odd](user.id)))

    assert response.status_code == 401
    assert await response.get_json() == expected
    assert statements == []


async def test_the_odd_claims_table_differs_from_a_good_token_only_in_the_odd_claim(
    app: Quart, client: QuartClient, session: AsyncSession
) -> None:
    user = await make_user(session)

    assert (await me(client, odd_token(app, user, {}))).status_code == 200
    assert (await me(client, odd_token(app, user, {"ver": 0}))).status_code == 200


# --- image URLs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=",
        "ftp://files.example/a.png",
        "//cdn.example/a.png",
        "https://",
        "https://i.example/a.png\n",
        " https://i.example/a.png",
        "https://i.example/a b.png",
        "vbscript:msgbox(1)",
        "file:///etc/passwd",
    ],
)
async def test_image_must_be_an_http_or_https_url(
    app: Quart, client: QuartClient, session: AsyncSession, image: str
) -> None:
    user = await make_user(session, image="https://i.example/kept.png")

    response = await update(client, token_for(app, user), image=image)

    assert response.status_code == 422
    errors = (await response.get_json())["errors"]
    assert set(errors) == {"body", "image"}, errors
    assert (await stored_user(session, user.id)).image == "https://i.example/kept.png"


@pytest.mark.parametrize(
    "image",
    [
        "https://api.realworld.io/images/smiley-cyrus.jpeg",
        "http://i.example/a.png?size=80#top",
        "HTTPS://I.EXAMPLE/A.PNG",
        "https://例え.jp/画像.png",
    ],
)
async def test_http_and_https_images_are_stored_as_sent(
    app: Quart, client: QuartClient, session: AsyncSession, image: str
) -> None:
    user = await make_user(session)

    response = await update(client, token_for(app, user), image=image)

    assert response.status_code == 200
    assert (await response.get_json())["user"]["image"] == image
    assert (await stored_user(session, user.id)).image == image


async def test_the_openapi_document_states_the_image_rule(client: QuartClient) -> None:
    """The fuzzer generates what the document allows: it must not allow `javascript:`."""
    document = await (await client.get("/openapi.json")).get_json()
    body = document["paths"]["/api/user"]["put"]["requestBody"]["content"]["application/json"]
    enveloped, flat = body["schema"]["anyOf"]

    for user in (enveloped["properties"]["user"], flat):
        text, null = user["properties"]["image"]["anyOf"]
        assert text["pattern"] == IMAGE_URL_PATTERN and null == {"type": "null"}
