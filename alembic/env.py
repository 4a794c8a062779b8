"""Async Alembic environment: the URL comes from the service settings."""

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from service.config import load_settings
from service.models import include_in_autogenerate, metadata

config = context.config


def _database_url() -> str:
    # `python -m service migrate` and the tests pass the URL in; the alembic CLI reads the env.
    return config.attributes.get("database_url") or load_settings().database_url


def _configure(connection: Connection | None = None, url: str | None = None) -> None:
    is_sqlite = (url or connection.dialect.name).startswith("sqlite")  # type: ignore[union-attr]
    context.configure(
        connection=connection,
        url=url,
        target_metadata=metadata,
        render_as_batch=is_sqlite,  # SQLite cannot ALTER most things: copy-and-move instead
        compare_type=True,
        include_object=include_in_autogenerate,
        literal_binds=connection is None,
    )


def run_migrations_offline() -> None:
    _configure(url=_database_url())
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # handed over by a caller that already holds one
        _run_sync(connection)
        return
    engine = create_async_engine(_database_url(), poolclass=NullPool)
    try:
        async with engine.connect() as async_connection:
            await async_connection.run_sync(_run_sync)
            await async_connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
