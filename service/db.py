"""Engine and sessions: the engine is made in `before_serving`, one AsyncSession per request."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from quart import Quart, current_app, g
from sqlalchemy import MetaData, event, text
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

from service.config import Settings
from service.errors import DATABASE_UNAVAILABLE
from service.metrics import instrument_engine

logger = logging.getLogger(__name__)

# Named constraints so Alembic's autogenerate and batch mode (SQLite) stay stable.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utc_now() -> datetime:
    return datetime.now(UTC)


def make_engine(settings: Settings) -> AsyncEngine:
    if settings.is_sqlite:
        engine = create_async_engine(settings.database_url, connect_args={"timeout": 15})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_recycle=settings.db_pool_recycle,
        pool_pre_ping=settings.db_pool_pre_ping,
        pool_timeout=settings.db_pool_timeout,
        # asyncpg waits 60 s for a connection by default and for a statement without end:
        # an outage must be a quick 503.
        connect_args={
            "timeout": settings.db_connect_timeout,
            "command_timeout": settings.db_command_timeout,
        },
    )
    event.listen(engine.sync_engine, "checkout", _discard_closed_connection)
    event.listen(engine.sync_engine, "handle_error", _drop_timed_out_connection)
    return engine


def _drop_timed_out_connection(context: ExceptionContext) -> None:
    """A statement that timed out (DB_COMMAND_TIMEOUT) leaves its connection in doubt: treat
    it as a disconnect, so the pool throws the connection away instead of sending it a
    ROLLBACK that would wait the same timeout again (twice the time to the 503)."""
    if isinstance(context.original_exception, TimeoutError):
        context.is_disconnect = True
        # Only this connection: one slow statement says nothing about the others.
        context.invalidate_pool_on_disconnect = False


def _discard_closed_connection(_dbapi_connection: Any, _record: Any, proxy: Any) -> None:
    """Replace a pooled connection the server has closed (restart, failover, idle timeout).

    asyncpg already knows such a connection is closed, so this costs no round trip, unlike
    pool_pre_ping (a `;`, inside BEGIN ... ROLLBACK outside autocommit) on every checkout.
    The pool retries the checkout with a fresh connection on DisconnectionError.
    """
    if proxy.driver_connection.is_closed():
        raise DisconnectionError("the server closed this connection")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@dataclass
class Database:
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    # The same pool, in autocommit mode: see reading() and writing_one_statement().
    autocommit_engine: AsyncEngine


def init_database(app: Quart, settings: Settings) -> None:
    """Create the engine when the server starts and dispose of it when it stops."""

    @app.before_serving
    async def _open() -> None:
        engine = make_engine(settings)
        instrument_engine(engine, publish_on_checkout=False)
        app.extensions["database"] = Database(
            engine,
            async_sessionmaker(engine, expire_on_commit=False),
            engine.execution_options(isolation_level="AUTOCOMMIT"),
        )

    @app.after_serving
    async def _close() -> None:
        database: Database | None = app.extensions.pop("database", None)
        if database is not None:
            await database.engine.dispose()

    @app.teardown_appcontext
    async def _close_session(_error: BaseException | None) -> None:
        session: AsyncSession | None = g.pop("db_session", None)
        if session is not None:
            await close_quietly(session)


async def close_quietly(session: AsyncSession) -> None:
    """Close a request's session without failing the request over it.

    When the connection died during the request (an outage, a failover), the ROLLBACK that
    closing sends fails as well. The answer is already made by then (a 503 for the error
    that broke the connection, or the request's own result), and an exception here would
    turn it into hypercorn's bare 500: drop the connection from the pool instead.
    """
    try:
        await session.close()
    except (DBAPIError, *DATABASE_UNAVAILABLE) as error:
        logger.warning("closing a session failed, connection dropped: %s", type(error).__name__)
        with contextlib.suppress(DBAPIError, *DATABASE_UNAVAILABLE):
            await session.invalidate()


def get_database() -> Database:
    return current_app.extensions["database"]


def get_session() -> AsyncSession:
    """This request's session, opened on first use and closed at teardown."""
    session: AsyncSession | None = g.get("db_session")
    if session is None:
        session = get_database().sessionmaker()
        g.db_session = session
    return session


def reading() -> AsyncConnection:
    """A connection for a request that only reads: `async with reading() as connection:`.

    Autocommit, so its statements run without the BEGIN ... ROLLBACK pair a session wraps
    around them: two round trips fewer per request, and no consistency lost, since under
    READ COMMITTED every statement takes its own snapshot inside a transaction too.
    Returned to the pool as soon as the block ends, before the response is sent.
    """
    return get_database().autocommit_engine.connect()


def writing_one_statement() -> AsyncConnection:
    """A connection for a write that is a single statement (an INSERT ... RETURNING):
    `async with writing_one_statement() as connection:`.

    Autocommit too: one statement is atomic and commits by itself, so the BEGIN and COMMIT
    a transaction adds would be two more round trips (and two more spans) for nothing.
    A write of several statements belongs in a session, committed once.
    """
    return get_database().autocommit_engine.connect()


async def insert_ignoring_duplicates(session: AsyncSession, table: Any, values: list[dict]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING on PostgreSQL and SQLite alike."""
    if not values:
        return
    if session.bind.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    await session.execute(insert(table).values(values).on_conflict_do_nothing())


async def connection_problem(settings: Settings) -> str | None:
    """None when the database answers; else one line saying what is wrong and what to do.

    For the commands (`migrate`, `seed`), which otherwise end in a driver's traceback of a
    hundred lines or more. The line never holds the password.
    """
    url = make_url(settings.database_url)
    if settings.is_sqlite:
        # The stdlib driver: aiosqlite, failing to open a file, answers from its thread
        # after asyncio.run() has closed the loop, which prints a traceback of its own.
        return await asyncio.to_thread(_sqlite_problem, url.database or ":memory:")
    where = _server(url)
    engine = make_engine(settings)
    try:
        async with asyncio.timeout(settings.db_connect_timeout + 1):
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) == "3D000":
            return (
                f'database "{url.database}" does not exist on {where}: create it '
                f"(`{_createdb_command(url)}`), then run `python -m service migrate`"
            )
        message = str(error.orig).split("\n", 1)[0]
        return f"{where} refused the connection: {message}"
    except (OSError, TimeoutError) as error:
        reason = str(error) or f"no answer within {settings.db_connect_timeout:g} s"
        return f"cannot reach {where}: {reason}"
    finally:
        await engine.dispose()
    return None


def _sqlite_problem(path: str) -> str | None:
    try:
        with contextlib.closing(sqlite3.connect(path)) as connection:
            connection.execute("SELECT 1")
    except sqlite3.Error as error:
        return f"cannot open the SQLite file {path}: {error}"
    return None


def _server(url: URL) -> str:
    return f"the PostgreSQL server at {url.host or 'localhost'}:{url.port or 5432}"


def _createdb_command(url: URL) -> str:
    options = [("-h", url.host), ("-p", url.port), ("-U", url.username)]
    words = ["createdb"] + [f"{flag} {value}" for flag, value in options if value]
    return " ".join([*words, shlex.quote(url.database or "")])
