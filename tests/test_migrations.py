"""Alembic is the only thing that creates the schema: it must agree with the models."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from service.__main__ import PROJECT_ROOT, migrate
from service.models import include_in_autogenerate, metadata
from tests.conftest import TestServers, make_settings


def _differences(connection: Connection) -> list[Any]:
    return compare_metadata(
        MigrationContext.configure(connection, opts={"include_object": include_in_autogenerate}),
        metadata,
    )


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def _inspect(url: str) -> tuple[list[Any], set[str]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_differences), await connection.run_sync(_tables)
    finally:
        await engine.dispose()


async def test_postgres_schema_matches_the_models() -> None:
    differences, tables = await _inspect(TestServers.database_url)

    assert differences == []
    assert {"products", "items", "alembic_version"} <= tables


# SQLite's reflection cannot read the lower(username) index back; PostgreSQL's can (above).
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based")
async def test_sqlite_upgrade_downgrade_upgrade(tmp_path: Path) -> None:
    settings = make_settings(database_url=f"sqlite:///{tmp_path / 'fresh.db'}")
    await asyncio.to_thread(migrate, settings)

    differences, tables = await _inspect(settings.database_url)
    assert differences == []
    assert {"products", "items"} <= tables

    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["database_url"] = settings.database_url
    await asyncio.to_thread(command.downgrade, config, "base")
    assert (await _inspect(settings.database_url))[1] == {"alembic_version"}

    await asyncio.to_thread(command.upgrade, config, "head")
    assert (await _inspect(settings.database_url))[0] == []
