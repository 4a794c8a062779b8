from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Integer, String, bindparam, delete, exists, func, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from service.db import insert_ignoring_duplicates
from service.users.models import Follow, RevokedToken, User


async def get_user(session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(User.email == email.lower()))


async def get_user_by_username(session: AsyncSession, username: str) -> User | None:
    return await session.scalar(select(User).where(User.username == username))


async def taken_fields(
    session: AsyncSession, *, email: str | None, username: str | None, except_user_id: int = 0
) -> list[str]:
    """Which of email / username another user already has.

    One statement, so both answers come from one snapshot: with two, a registration
    committing in between would be seen by the second only.
    """
    email_taken = (
        exists().where(User.email == email.lower(), User.id != except_user_id)
        if email is not None
        else literal(False)
    )
    # Case-insensitive, like the unique index on lower(username): `Race1` takes `race1`.
    username_taken = (
        exists().where(func.lower(User.username) == username.lower(), User.id != except_user_id)
        if username is not None
        else literal(False)
    )
    row = (await session.execute(select(email_taken, username_taken))).one()
    return [field for field, taken in zip(("email", "username"), row, strict=True) if taken]


async def create_user(
    session: AsyncSession, *, email: str, username: str, password_hash: str
) -> User:
    user = User(email=email.lower(), username=username, password_hash=password_hash)
    session.add(user)
    await session.flush()
    return user


async def update_user(
    session: AsyncSession, user: User, *, revoke_tokens: bool = False, **changes: Any
) -> User:
    """Apply `changes`; with `revoke_tokens`, also raise the token version in the same
    UPDATE, which revokes every token issued before (user.token_version is the new one)."""
    for field, value in changes.items():
        setattr(user, field, value)
    if revoke_tokens:
        # In SQL, not `+ 1` in Python: two concurrent changes must raise it twice, or a
        # token issued after the first would survive the second.
        user.token_version = User.token_version + 1  # type: ignore[assignment]
    await session.flush()
    if revoke_tokens:
        await session.refresh(user, ["token_version"])
    return user


async def is_following(session: AsyncSession, follower_id: int | None, followed_id: int) -> bool:
    if follower_id is None:
        return False
    return bool(
        await session.scalar(
            select(
                exists().where(Follow.follower_id == follower_id, Follow.followed_id == followed_id)
            )
        )
    )


async def follow(session: AsyncSession, follower_id: int, followed_id: int) -> None:
    await insert_ignoring_duplicates(
        session, Follow.__table__, [{"follower_id": follower_id, "followed_id": followed_id}]
    )


async def unfollow(session: AsyncSession, follower_id: int, followed_id: int) -> None:
    await session.execute(
        delete(Follow).where(Follow.follower_id == follower_id, Follow.followed_id == followed_id)
    )


class TokenStanding(NamedTuple):
    token_version: int
    revoked: bool


# Every authenticated request asks this: one statement (one round trip), built once, run on
# an autocommit connection. No row: the user was deleted.
_TOKEN_STANDING = select(
    User.__table__.c.token_version,
    exists().where(RevokedToken.__table__.c.jti == bindparam("jti", type_=String)),
).where(User.__table__.c.id == bindparam("user_id", type_=Integer))


async def get_token_standing(
    connection: AsyncConnection, user_id: int, jti: str
) -> TokenStanding | None:
    """The user's current token version and whether `jti` was logged out; None when the
    user does not exist."""
    row = (await connection.execute(_TOKEN_STANDING, {"user_id": user_id, "jti": jti})).first()
    return TokenStanding(row[0], bool(row[1])) if row is not None else None


async def revoke_token(session: AsyncSession, jti: str, expires_at: datetime) -> None:
    await insert_ignoring_duplicates(
        session, RevokedToken.__table__, [{"jti": jti, "expires_at": expires_at}]
    )


async def purge_expired_revocations(session: AsyncSession) -> int:
    """Drop revocations of tokens that have expired anyway; return how many."""
    result = await session.execute(
        delete(RevokedToken).where(RevokedToken.expires_at < datetime.now(UTC))
    )
    return result.rowcount or 0
