"""The database check behind /readyz, /health and /api/health.

On a connection of its own, outside the request pool: with every pooled connection held
(a locked table, a burst) the instance is busy, not broken, and failing readiness then
would take every pod out of the Service at once, turning a slow moment into an outage.

/readyz also compares the schema with the code's Alembic head (read once at start-up):
on an unmigrated database every request fails, so such an instance is not ready.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from alembic.script import ScriptDirectory
from quart import Quart, current_app
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config import Settings
from service.db import make_engine
from service.errors import MIGRATE_HINT, database_mistake

logger = logging.getLogger(__name__)

ALEMBIC_DIRECTORY = Path(__file__).resolve().parents[2] / "alembic"
# A probe must answer well inside the orchestrator's timeout, even with the database
# black-holed or partitioned.
CHECK_TIMEOUT_SECONDS = 1.5


@dataclass(frozen=True)
class Migrations:
    """What the code expects: its head revisions, and every revision it knows."""

    heads: frozenset[str]
    known: frozenset[str]

    @classmethod
    def read(cls, directory: Path = ALEMBIC_DIRECTORY) -> Migrations:
        script = ScriptDirectory(str(directory))
        return cls(
            heads=frozenset(script.get_heads()),
            known=frozenset(revision.revision for revision in script.walk_revisions()),
        )

    def compare(self, applied: set[str] | None) -> tuple[str, bool]:
        """(what the `schema` check says, whether the code can run on it)."""
        if not applied:
            return f"missing ({MIGRATE_HINT})", False
        if applied == self.heads:
            return "ok", True
        database, code = ",".join(sorted(applied)), ",".join(sorted(self.heads))
        if applied - self.known:
            # Migrated by a newer release during a rolling update: the migrations only add
            # (expand, then contract a release later), so this code still runs on it, and
            # failing here would take the old pods out before the new ones are ready.
            return f"ahead ({database} > {code})", True
        return f"behind ({database} < {code})", False


@dataclass(frozen=True)
class DatabaseState:
    reachable: bool
    schema: str  # "ok", "behind (0003 < 0004)", "missing (...)", "ahead (...)", "not checked"
    ready: bool


UNREACHABLE = DatabaseState(reachable=False, schema="not checked", ready=False)


class DatabaseProbe:
    """Checks the database on a one-connection pool of its own, one check at a time."""

    def __init__(self, engine: AsyncEngine, migrations: Migrations) -> None:
        self.engine = engine
        # Autocommit: a SELECT without the BEGIN ... ROLLBACK round trips around it.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.migrations = migrations
        self._in_flight: asyncio.Task[DatabaseState] | None = None
        self._last: DatabaseState | None = None

    async def check(self) -> DatabaseState:
        """Callers that come while a check runs share it: a burst of probes is one query."""
        if self._in_flight is None or self._in_flight.done():
            self._in_flight = asyncio.create_task(self._check())
        try:
            # Shielded: neither a client that gives up nor this timeout cancels the check
            # the others share. The timeout here too: a statement cut off by the check's
            # own timeout costs up to 2 s more while SQLAlchemy closes its connection.
            async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                return await asyncio.shield(self._in_flight)
        except TimeoutError:
            return UNREACHABLE

    async def close(self) -> None:
        if self._in_flight is not None:
            self._in_flight.cancel()
            await asyncio.gather(self._in_flight, return_exceptions=True)  # let it unwind
        await self.engine.dispose()

    async def _check(self) -> DatabaseState:
        cause = ""
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                applied = await self._applied_revisions()
        except Exception as error:
            state = UNREACHABLE
            cause = database_mistake(error) or type(error).__name__
        else:
            schema, ready = self.migrations.compare(applied)
            state = DatabaseState(reachable=True, schema=schema, ready=ready)
        self._log_change(state, cause)
        return state

    async def _applied_revisions(self) -> set[str] | None:
        """The revisions in alembic_version; None when there is no such table."""
        async with self._autocommit.connect() as connection:
            try:
                result = await connection.execute(text("SELECT version_num FROM alembic_version"))
            except DBAPIError as error:
                if database_mistake(error) is not None:  # connected: so the table is missing
                    return None
                raise
            return {row[0] for row in result}

    def _log_change(self, state: DatabaseState, cause: str) -> None:
        """A line when readiness changes (the probes themselves log at DEBUG)."""
        previous, self._last = self._last, state
        if state == previous or (previous is None and state.ready):
            return
        if state.ready:
            logger.info("ready again: database reachable, schema %s", state.schema)
        elif not state.reachable:
            logger.warning("not ready: database unreachable: %s", cause)
        else:
            logger.warning("not ready: database schema %s", state.schema)


def init_database_probe(app: Quart, settings: Settings) -> None:
    @app.before_serving
    async def _open() -> None:
        migrations = await asyncio.to_thread(Migrations.read)  # imports every migration
        # The request pool's settings (timeouts, SQLite pragmas), one connection: held by
        # each process, so (workers x (DB_POOL_SIZE + DB_MAX_OVERFLOW + 1)) in all.
        engine = make_engine(settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 0}))
        app.extensions["database_probe"] = DatabaseProbe(engine, migrations)

    @app.after_serving
    async def _close() -> None:
        probe: DatabaseProbe | None = app.extensions.pop("database_probe", None)
        if probe is not None:
            await probe.close()


async def check_database() -> DatabaseState:
    probe: DatabaseProbe = current_app.extensions["database_probe"]
    return await probe.check()
