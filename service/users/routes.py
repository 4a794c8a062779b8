"""Register, login, the current user, logout, and profiles (RealWorld + the articles seed)."""

from __future__ import annotations

from quart import Blueprint, current_app
from quart_cors import cors
from quart_schema import validate_request, validate_response
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from service.auth import (
    Unauthorized,
    create_token,
    hash_password,
    optional_claims,
    require_auth,
    required_claims,
    verify_password,
    viewer_id,
)
from service.db import get_session
from service.errors import APIError, Conflict, NotFound, Unprocessable
from service.openapi import documents_errors, token_optional
from service.ratelimit import count_attempt, rate_limit
from service.users import queries
from service.users.models import User
from service.users.passwords import password_problem
from service.users.schemas import (
    MessageOut,
    ProfileEnvelope,
    SeedUserEnvelope,
    UserEnvelope,
    UserLogin,
    UserOut,
    UserRegister,
    UserUpdate,
    profile_out,
)

# CORS on /api for browser front ends: origins from CORS_ORIGINS (unset: "*" while
# developing, none in production; see Settings.cors_allowed_origins).
blueprint = cors(Blueprint("users", __name__, url_prefix="/api"))

WRONG_CREDENTIALS = "email or password is invalid"


def login_accounts(data: UserLogin) -> list[str]:
    return [data.email]


def register_accounts(data: UserRegister) -> list[str]:
    return [data.email, data.username]


def user_out(user: User, token: str) -> UserOut:
    return UserOut(
        email=user.email, token=token, username=user.username, bio=user.bio, image=user.image
    )


def _taken(fields: list[str], error_class: type[APIError]) -> APIError:
    details = [{"field": field, "message": "has already been taken"} for field in fields]
    return error_class(f"{' and '.join(fields)} already taken", details=details)


def _refuse_weak_password(password: str, *, email: str, username: str) -> None:
    problem = password_problem(password, email=email, username=username)
    if problem is not None:
        raise Unprocessable(
            f"password {problem}", details=[{"field": "password", "message": problem}]
        )


async def _taken_meanwhile(
    session: AsyncSession,
    error_class: type[APIError],
    *,
    email: str | None,
    username: str | None,
    except_user_id: int = 0,
) -> APIError:
    """After a unique violation: a concurrent request took the email or username between
    our check and our write, and has committed (PostgreSQL raises only then). Name the
    fields it took, as the check would have, so a client sees the same error either way."""
    await session.rollback()
    taken = await queries.taken_fields(
        session, email=email, username=username, except_user_id=except_user_id
    )
    return _taken(taken or ["email", "username"], error_class)


async def _register(data: UserRegister, taken_error: type[APIError]) -> tuple[User, str]:
    _refuse_weak_password(data.password, email=data.email, username=data.username)
    session = get_session()
    taken = await queries.taken_fields(session, email=data.email, username=data.username)
    if taken:
        raise _taken(taken, taken_error)
    password_hash = await hash_password(data.password)
    try:
        user = await queries.create_user(
            session, email=data.email, username=data.username, password_hash=password_hash
        )
        await session.commit()
    except IntegrityError:  # a concurrent registration won the race
        raise await _taken_meanwhile(
            session, taken_error, email=data.email, username=data.username
        ) from None
    return user, create_token(current_app.extensions["settings"], user.id, user.token_version)


async def _login(data: UserLogin) -> tuple[User, str]:
    user = await queries.get_user_by_email(get_session(), data.email)
    # Verified even for an unknown email, so both cases take as long and say the same.
    if not await verify_password(user.password_hash if user else None, data.password):
        raise Unauthorized(WRONG_CREDENTIALS)
    assert user is not None
    return user, create_token(current_app.extensions["settings"], user.id, user.token_version)


@blueprint.post("/users", strict_slashes=False)
@documents_errors(429)
@validate_request(UserRegister)
@validate_response(UserEnvelope, 201)
@rate_limit("register", accounts=register_accounts)
async def register(data: UserRegister) -> tuple[UserEnvelope, int]:
    user, token = await _register(data, Unprocessable)
    return UserEnvelope(user=user_out(user, token)), 201


@blueprint.post("/register", strict_slashes=False)
@documents_errors(409, 429)
@validate_request(UserRegister)
@validate_response(SeedUserEnvelope, 201)
@rate_limit("register", accounts=register_accounts)
async def register_seed(data: UserRegister) -> tuple[SeedUserEnvelope, int]:
    user, token = await _register(data, Conflict)
    return SeedUserEnvelope(user=user_out(user, token), token=token), 201


@blueprint.post("/users/login", strict_slashes=False)
@documents_errors(401, 429)
@validate_request(UserLogin)
@validate_response(UserEnvelope)
@rate_limit("login", accounts=login_accounts)
async def login(data: UserLogin) -> UserEnvelope:
    user, token = await _login(data)
    return UserEnvelope(user=user_out(user, token))


@blueprint.post("/login", strict_slashes=False)
@documents_errors(401, 429)
@validate_request(UserLogin)
@validate_response(SeedUserEnvelope)
@rate_limit("login", accounts=login_accounts)
async def login_seed(data: UserLogin) -> SeedUserEnvelope:
    user, token = await _login(data)
    return SeedUserEnvelope(user=user_out(user, token), token=token)


async def _current_user() -> tuple[User, str]:
    claims = await required_claims()
    user = await queries.get_user(get_session(), claims.user_id)
    if user is None:  # deleted since the token was issued
        raise Unauthorized("the token's user no longer exists")
    return user, claims.token


@blueprint.get("/user", strict_slashes=False)
@require_auth
@validate_response(UserEnvelope)
async def current_user() -> UserEnvelope:
    user, token = await _current_user()
    return UserEnvelope(user=user_out(user, token))


@blueprint.put("/user", strict_slashes=False)
@documents_errors(429)  # too many email changes
@require_auth
@validate_request(UserUpdate)
@validate_response(UserEnvelope)
async def update_current_user(data: UserUpdate) -> UserEnvelope:
    user, token = await _current_user()
    changes = data.changes()
    # Each try at another email says whether it has an account: limited like registering.
    if changes.get("email", user.email) != user.email:
        await count_attempt("email_change", [f"user:{user.id}"])
    if "password" in changes:
        _refuse_weak_password(
            changes["password"],  # type: ignore[arg-type]
            email=changes.get("email", user.email),  # type: ignore[arg-type]
            username=changes.get("username", user.username),  # type: ignore[arg-type]
        )
    session = get_session()
    taken = await queries.taken_fields(
        session,
        email=changes.get("email"),  # type: ignore[arg-type]
        username=changes.get("username"),  # type: ignore[arg-type]
        except_user_id=user.id,
    )
    if taken:
        raise _taken(taken, Unprocessable)
    # A new password or email revokes every earlier token: whoever held one (stolen, or
    # on another device) must log in with the new credentials.
    credentials_change = "password" in changes or changes.get("email", user.email) != user.email
    if "password" in changes:
        changes["password_hash"] = await hash_password(changes.pop("password"))  # type: ignore[arg-type]
    try:
        await queries.update_user(session, user, revoke_tokens=credentials_change, **changes)
        await session.commit()
    except IntegrityError:  # a concurrent request took the email or username
        raise await _taken_meanwhile(
            session,
            Unprocessable,
            email=changes.get("email"),  # type: ignore[arg-type]
            username=changes.get("username"),  # type: ignore[arg-type]
            except_user_id=user.id,
        ) from None
    if credentials_change:  # the caller's own token is revoked too: here is its successor
        token = create_token(current_app.extensions["settings"], user.id, user.token_version)
    return UserEnvelope(user=user_out(user, token))


@blueprint.post("/logout", strict_slashes=False)
@require_auth
@validate_response(MessageOut)
async def logout() -> MessageOut:
    claims = await required_claims()
    session = get_session()
    await queries.revoke_token(session, claims.jti, claims.expires_at)
    await queries.purge_expired_revocations(session)
    await session.commit()
    return MessageOut(message="logged out")


async def _profile_user(username: str) -> User:
    user = await queries.get_user_by_username(get_session(), username)
    if user is None:
        raise NotFound(f"profile {username!r} not found")
    return user


@blueprint.get("/profiles/<username>", strict_slashes=False)
@token_optional
@validate_response(ProfileEnvelope)
async def get_profile(username: str) -> ProfileEnvelope:
    user = await _profile_user(username)
    following = await queries.is_following(
        get_session(), viewer_id(await optional_claims()), user.id
    )
    return ProfileEnvelope(profile=profile_out(user, following))


@blueprint.post("/profiles/<username>/follow", strict_slashes=False)
@documents_errors(422)  # following yourself
@require_auth
@validate_response(ProfileEnvelope)
async def follow(username: str) -> ProfileEnvelope:
    claims = await required_claims()
    user = await _profile_user(username)
    if user.id == claims.user_id:
        raise Unprocessable(
            "you cannot follow yourself", details=[{"field": "username", "message": "is yourself"}]
        )
    session = get_session()
    await queries.follow(session, claims.user_id, user.id)
    await session.commit()
    return ProfileEnvelope(profile=profile_out(user, True))


@blueprint.delete("/profiles/<username>/follow", strict_slashes=False)
@require_auth
@validate_response(ProfileEnvelope)
async def unfollow(username: str) -> ProfileEnvelope:
    claims = await required_claims()
    user = await _profile_user(username)
    session = get_session()
    await queries.unfollow(session, claims.user_id, user.id)
    await session.commit()
    return ProfileEnvelope(profile=profile_out(user, False))
