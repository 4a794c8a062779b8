"""Engine and session, the Flask-SQLAlchemy way: one scoped session per thread, removed
at the end of every request."""

from __future__ import annotations

import os
import re

from flask import Flask, current_app
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, scoped_session, sessionmaker

DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"

# `postgres://`, `postgresql://` and any other driver (`+asyncpg`) all become psycopg 3,
# so the harness can hand both services the same URL.
_POSTGRES_SCHEME = re.compile(r"^postgres(?:ql)?(?:\+\w+)?://")


def database_url() -> str:
    url = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    return _POSTGRES_SCHEME.sub("postgresql+psycopg://", url, count=1)


def make_engine(url: str) -> Engine:
    # The backend seed's pool settings (DB_POOL_SIZE 10, DB_MAX_OVERFLOW 20,
    # DB_POOL_RECYCLE 3600, pool_pre_ping), which are also the service's defaults.
    return create_engine(
        url,
        pool_size=int(os.environ.get("DB_POOL_SIZE", "10")),
        max_overflow=int(os.environ.get("DB_MAX_OVERFLOW", "20")),
        pool_recycle=int(os.environ.get("DB_POOL_RECYCLE", "3600")),
        pool_pre_ping=True,
    )


def init_db(app: Flask) -> None:
    """No I/O here: create_engine connects lazily, so each gunicorn worker (forked
    before the first request) opens its own connections."""
    engine = make_engine(database_url())
    # expire_on_commit stays True, Flask-SQLAlchemy's default: a row returned after a
    # commit is read back from the database, as the Flask originals do.
    app.extensions["db_session"] = scoped_session(sessionmaker(bind=engine))

    @app.teardown_appcontext
    def _remove_session(_error: BaseException | None) -> None:
        app.extensions["db_session"].remove()


def session() -> Session:
    """This thread's (so this request's) session."""
    return current_app.extensions["db_session"]()
