"""Passwords (argon2), tokens (PyJWT, HS256) and the current user.

A token carries `sub` (the user id), a unique `jti`, `exp` and `ver`, the user's
token version when it was issued. Logging out stores the `jti` in `revoked_tokens`;
changing the password or email raises the user's `token_version`. Every API process
checks both in one statement per request, so a token is refused at once everywhere
and across restarts, and so is a deleted user's.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Annotated, ParamSpec, TypeVar

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, Field, ValidationError
from quart import current_app, g, request

from service.config import Settings
from service.db import reading
from service.errors import APIError
from service.openapi import token_required
from service.users.passwords import normalize_password
from service.users.queries import get_token_standing

JWT_ALGORITHM = "HS256"
_hasher = PasswordHasher()
# Verified when the email is unknown, so that both answers take as long.
_DUMMY_HASH = _hasher.hash("not-a-real-password")

P = ParamSpec("P")
R = TypeVar("R")


class Unauthorized(APIError):
    status = 401
    message = "missing or invalid token"


class Forbidden(APIError):
    status = 403
    message = "forbidden"


@dataclass(frozen=True)
class TokenClaims:
    token: str
    user_id: int
    jti: str
    expires_at: datetime
    token_version: int


_INT32_MAX = 2_147_483_647
# The last second of year 9999: later cannot be a datetime (an `exp` of 10**20 was a 500).
_LATEST_EXP = 253_402_300_799


class _Claims(BaseModel):
    """What a correctly signed token must also hold before the database is asked: a
    signature proves who made a token, not that its values fit our columns and types
    (a `sub` beyond int32 or a NUL in `jti` reached PostgreSQL)."""

    sub: Annotated[str, Field(strict=True, pattern=r"^[1-9][0-9]{0,9}$")]
    # uuid4().hex from create_token; the revoked_tokens column holds 64 characters.
    jti: Annotated[str, Field(strict=True, pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    exp: Annotated[int, Field(strict=True, gt=0, le=_LATEST_EXP)]
    # Tokens issued before versions existed have none: version 0, every user's first.
    ver: Annotated[int, Field(strict=True, ge=0, le=_INT32_MAX)] = 0


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, normalize_password(password))


async def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant work whether or not the user exists: pass None for an unknown user."""
    # The NFKC form first (how passwords are hashed now), then the password as typed,
    # which is how hashes made before normalising were made. The work depends only on
    # the password sent, never on the account, so it tells nothing about the account.
    candidates = dict.fromkeys((normalize_password(password), password))

    def verify() -> bool:
        for candidate in candidates:
            try:
                if _hasher.verify(password_hash or _DUMMY_HASH, candidate):
                    return bool(password_hash)
            except VerificationError:
                continue
            except InvalidHashError:
                return False
        return False

    return await asyncio.to_thread(verify)


def create_token(settings: Settings, user_id: int, token_version: int) -> str:
    """A token for the user at `token_version` (User.token_version): raising that version
    revokes it."""
    now = datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + timedelta(seconds=settings.jwt_expires_seconds),
        "ver": token_version,
    }
    return jwt.encode(claims, settings.secret_key.get_secret_value(), algorithm=JWT_ALGORITHM)


def decode_token(settings: Settings, token: str) -> TokenClaims:
    try:
        claims = jwt.decode(
            token,
            settings.secret_key.get_secret_value(),
            algorithms=[JWT_ALGORITHM],
            options={"require": ["exp", "sub", "jti"]},
        )
        checked = _Claims.model_validate(claims)
        user_id = int(checked.sub)
        if user_id > _INT32_MAX:
            raise ValueError("sub beyond the users.id column")
    except (jwt.InvalidTokenError, ValidationError, ValueError):
        raise Unauthorized("invalid or expired token") from None
    return TokenClaims(
        token=token,
        user_id=user_id,
        jti=checked.jti,
        expires_at=datetime.fromtimestamp(checked.exp, tz=UTC),
        token_version=checked.ver,
    )


def _token_from_header() -> str | None:
    """`Authorization: Token <jwt>` (RealWorld) or `Bearer <jwt>`."""
    header = request.headers.get("Authorization")
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() not in ("token", "bearer") or not token.strip():
        raise Unauthorized("the Authorization header must be 'Token <jwt>' or 'Bearer <jwt>'")
    return token.strip()


async def _load_claims() -> TokenClaims | None:
    if "token_claims" in g:
        return g.token_claims
    token = _token_from_header()
    claims = None
    if token is not None:
        claims = decode_token(current_app.extensions["settings"], token)
        async with reading() as connection:  # no transaction: one round trip, not three
            standing = await get_token_standing(connection, claims.user_id, claims.jti)
        if standing is None:
            raise Unauthorized("the token's user no longer exists")
        if standing.revoked:
            raise Unauthorized("this token has been logged out")
        if standing.token_version != claims.token_version:
            raise Unauthorized("this token was issued before a password or email change")
    g.token_claims = claims
    return claims


async def optional_claims() -> TokenClaims | None:
    """The caller's token when one is sent (a bad one is still a 401), else None."""
    return await _load_claims()


async def required_claims() -> TokenClaims:
    claims = await _load_claims()
    if claims is None:
        raise Unauthorized("authentication required")
    return claims


def require_auth(view: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Refuse the request with 401 before the view runs when no valid token is sent."""

    @wraps(view)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        await required_claims()
        return await view(*args, **kwargs)

    return token_required(wrapper)  # the OpenAPI document names the token scheme


def viewer_id(claims: TokenClaims | None) -> int | None:
    return claims.user_id if claims is not None else None
