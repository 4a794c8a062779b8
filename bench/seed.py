"""The benchmark database: recreate, migrate with our Alembic, bulk-load the data sets.

Rows go in with asyncpg's COPY (`copy_records_to_table`): 100,000 items and 10,000
articles take seconds, not minutes. Values are generated from a fixed seed, so every
run loads the same data. Explicit ids are followed by `setval`, so rows the servers
insert later (POST /products) get fresh ids.
"""

from __future__ import annotations

import random
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from argon2 import PasswordHasher

ARTICLES = 10_000
USERS = 20
TAGS = 50
ITEMS = 100_000
MAX_TAGS_PER_ARTICLE = 3
MAX_FAVORITES_PER_ARTICLE = 5
SEED_PASSWORD = "bench-password"  # noqa: S105 - a throwaway benchmark user's password
RANDOM_SEED = 20261122
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def checked_name(name: str) -> str:
    """Database names go into DDL unquoted-safe: lower-case identifiers only."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"database name {name!r}: use a lower-case identifier")
    return name


async def recreate_database(admin_dsn: str, name: str) -> None:
    connection = await asyncpg.connect(admin_dsn)
    try:
        # FORCE ends sessions a previous, killed run may have left (PostgreSQL 13+).
        await connection.execute(f'DROP DATABASE IF EXISTS "{checked_name(name)}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{checked_name(name)}"')
    finally:
        await connection.close()


async def database_exists(admin_dsn: str, name: str) -> bool:
    connection = await asyncpg.connect(admin_dsn)
    try:
        return bool(await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await connection.close()


def run_service_command(python: Path, root: Path, command: str, env: dict[str, str]) -> None:
    """`python -m service migrate|seed`: our own code creates the schema and the sample rows."""
    result = subprocess.run(  # noqa: S603 - fixed argv
        [str(python), "-m", "service", command],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"`python -m service {command}` failed:\n{result.stderr[-3000:]}")


def _timestamps(count: int, step: timedelta, now: datetime) -> list[datetime]:
    return [now - step * index for index in range(count)]


def users_rows(now: datetime) -> list[tuple]:
    # argon2 on purpose is slow: one hash serves every user (they all get the same password).
    password_hash = PasswordHasher().hash(SEED_PASSWORD)
    return [
        (
            number,
            f"user{number:02d}@example.com",
            f"user{number:02d}",
            password_hash,
            f"Bio of user {number}",
            None,
            now,
            now,
        )
        for number in range(1, USERS + 1)
    ]


def articles_rows(rng: random.Random, now: datetime) -> list[tuple]:
    body = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 8
    created = _timestamps(ARTICLES, timedelta(minutes=7), now)
    rows = []
    for article_id in range(1, ARTICLES + 1):
        title = f"Bench article number {article_id}"
        rows.append(
            (
                article_id,
                f"bench-article-number-{article_id}-{article_id}",
                title,
                f"What article {article_id} is about",
                body,
                rng.randint(1, USERS),
                created[article_id - 1],
                created[article_id - 1],
            )
        )
    return rows


def links(rng: random.Random, count: int, population: int, most: int) -> list[tuple[int, int]]:
    """(article id, other id) pairs: 0..`most` distinct others per article."""
    pairs = []
    for article_id in range(1, count + 1):
        for other in rng.sample(range(1, population + 1), rng.randint(0, most)):
            pairs.append((article_id, other))
    return pairs


def items_rows(rng: random.Random, now: datetime) -> list[tuple]:
    words = ("red", "blue", "steel", "oak", "small", "large", "round", "flat", "bolt", "lamp")
    year = 365 * 24 * 3600
    rows = []
    for item_id in range(1, ITEMS + 1):
        # Spread over a year in random order, so sort=-created_at needs the index, not id order.
        created = now - timedelta(seconds=rng.randrange(year))
        name = f"{rng.choice(words)} {rng.choice(words)} {item_id}"
        rows.append(
            (
                item_id,
                name,
                f"Description of {name}",
                rng.randint(0, 500),
                round(rng.uniform(0.5, 500), 2),
                created,
                created,
            )
        )
    return rows


async def _copy(connection: asyncpg.Connection, table: str, columns: list[str], rows: list) -> None:
    await connection.copy_records_to_table(table, records=rows, columns=columns)


async def _advance_sequence(connection: asyncpg.Connection, table: str) -> None:
    # `table` is one of our fixed table names; identifiers cannot be bound parameters.
    await connection.execute(
        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
        f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)"
    )


async def seed_bulk(dsn: str) -> dict[str, int]:
    """Users, tags, articles with tags and favorites, and items; row counts by table."""
    rng = random.Random(RANDOM_SEED)
    now = datetime.now(UTC)
    timestamps = ["created_at", "updated_at"]
    tables: dict[str, tuple[list[str], list]] = {
        "users": (
            ["id", "email", "username", "password_hash", "bio", "image", *timestamps],
            users_rows(now),
        ),
        "tags": (["id", "name"], [(number, f"tag{number:02d}") for number in range(1, TAGS + 1)]),
        "articles": (
            ["id", "slug", "title", "description", "body", "author_id", *timestamps],
            articles_rows(rng, now),
        ),
        "article_tags": (
            ["article_id", "tag_id"],
            links(rng, ARTICLES, TAGS, MAX_TAGS_PER_ARTICLE),
        ),
        "favorites": (
            ["article_id", "user_id", "created_at"],
            [
                (article_id, user_id, now)
                for article_id, user_id in links(rng, ARTICLES, USERS, MAX_FAVORITES_PER_ARTICLE)
            ],
        ),
        "items": (
            ["id", "name", "description", "quantity", "price", *timestamps],
            items_rows(rng, now),
        ),
    }
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction():
            for table, (columns, rows) in tables.items():
                await _copy(connection, table, columns, rows)
            for table in ("users", "tags", "articles", "items"):
                await _advance_sequence(connection, table)
        # Fresh statistics, so the planner sees 100,000 items rather than an empty table.
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    return {table: len(rows) for table, (_columns, rows) in tables.items()}


async def product_ids(dsn: str) -> list[int]:
    connection = await asyncpg.connect(dsn)
    try:
        return [row["id"] for row in await connection.fetch("SELECT id FROM products ORDER BY id")]
    finally:
        await connection.close()


async def delete_products_after(dsn: str, last_seeded_id: int) -> int:
    """Remove what POST /products added, so every list scenario sees the same 10 rows."""
    connection = await asyncpg.connect(dsn)
    try:
        status = await connection.execute("DELETE FROM products WHERE id > $1", last_seeded_id)
        return int(status.split()[-1])
    finally:
        await connection.close()


async def seed_todos(dsn: str, rows: int) -> None:
    """Exactly `rows` todos and no exports: each export run starts from the same table."""
    now = datetime.now(UTC)
    records = [
        (f"Bench todo number {number} with a little text", number % 3 == 0, now, now)
        for number in range(1, rows + 1)
    ]
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction():
            await connection.execute("TRUNCATE todos, exports, export_chunks RESTART IDENTITY")
            await _copy(connection, "todos", ["task", "done", "created_at", "updated_at"], records)
        await connection.execute("ANALYZE todos")
    finally:
        await connection.close()


async def connections_in_use(dsn: str) -> str:
    """Connections by database: others' share of max_connections is ours and the twin's less."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT COALESCE(datname, '(none)') AS name, count(*) AS n FROM pg_stat_activity "
            "GROUP BY 1 ORDER BY 2 DESC"
        )
    finally:
        await connection.close()
    return ", ".join(f"{row['name']}: {row['n']}" for row in rows)


async def database_facts(dsn: str) -> dict[str, str]:
    connection = await asyncpg.connect(dsn)
    try:
        return {
            "server_version": await connection.fetchval("SHOW server_version"),
            "max_connections": await connection.fetchval("SHOW max_connections"),
        }
    finally:
        await connection.close()
