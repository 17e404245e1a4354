"""Applies procrastinate's schema and our numbered SQL files, once each, under an advisory lock.

Several processes may start at once (API replicas, workers); the advisory lock makes them
take turns, and the `ferry_migrations` table makes every step run exactly once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from procrastinate.schema import SchemaManager
from psycopg import AsyncConnection
from psycopg.rows import tuple_row

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
# An arbitrary constant that names "Ferry's schema migrations" among advisory locks.
ADVISORY_LOCK_KEY = 0x4645_5252_5901
PROCRASTINATE_STEP = "0000_procrastinate_schema"


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str


def pending_candidates(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration in the order it must run: procrastinate's schema, then our files."""
    steps = [Migration(PROCRASTINATE_STEP, SchemaManager.get_schema())]
    for path in sorted(directory.glob("*.sql")):
        steps.append(Migration(path.stem, path.read_text(encoding="utf-8")))
    return steps


async def apply_migrations(conninfo: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply what is pending; return the names applied now (empty when up to date)."""
    applied_now: list[str] = []
    async with await AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS ferry_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur = await conn.execute("SELECT name FROM ferry_migrations")
            done = {row[0] for row in await cur.fetchall()}
            for step in pending_candidates(directory):
                if step.name in done:
                    continue
                async with conn.transaction():
                    # The SQL is ours or procrastinate's, read from files: not user input. As
                    # bytes, since psycopg takes a `str` query only as a literal.
                    await conn.execute(step.sql.encode())
                    await conn.execute(
                        "INSERT INTO ferry_migrations (name) VALUES (%s)", (step.name,)
                    )
                log.info("applied migration", extra={"migration": step.name})
                applied_now.append(step.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
    return applied_now


@cache
def migration_names(directory: Path = MIGRATIONS_DIR) -> tuple[str, ...]:
    """The name of every migration, in order, as `ferry_migrations` records them."""
    return (PROCRASTINATE_STEP, *(path.stem for path in sorted(directory.glob("*.sql"))))


async def pending_migrations(conn: AsyncConnection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """The migrations not yet applied to the database `conn` is on, in order."""
    expected = migration_names(directory)
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute("SELECT to_regclass('ferry_migrations') IS NOT NULL")
        row = await cur.fetchone()
        if row is None or not row[0]:  # never migrated
            return list(expected)
        await cur.execute("SELECT name FROM ferry_migrations")
        done = {name for (name,) in await cur.fetchall()}
    return [name for name in expected if name not in done]
