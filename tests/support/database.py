"""Scratch Postgres databases for the tests that need one of their own."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator

import psycopg
from psycopg.types.json import Jsonb

from app.store.migrate import MIGRATIONS_DIR, PROCRASTINATE_STEP, apply_migrations
from bench.cluster import scratch_database

# What a fully migrated database records as applied, in order.
EXPECTED_MIGRATIONS = [PROCRASTINATE_STEP, *sorted(p.stem for p in MIGRATIONS_DIR.glob("*.sql"))]

# Where scratch databases are made: the local server unless told otherwise.
ADMIN_URL = os.environ.get(
    "TEST_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@contextlib.contextmanager
def migrated_scratch_database(admin_url: str) -> Iterator[str]:
    """A new database with every migration applied, dropped afterwards."""
    with scratch_database(admin_url) as url:
        asyncio.run(apply_migrations(url))
        yield url


def applied_migrations(url: str) -> list[str]:
    """The migrations the database at `url` records as applied, by name."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT name FROM ferry_migrations ORDER BY name").fetchall()
    return [name for (name,) in rows]


def inserts_waiting_for_a_lock(database_url: str) -> int:
    """How many inserts of a response row wait for a lock on the database at `database_url`
    (one a test holds on the table, say)."""
    with psycopg.connect(database_url, autocommit=True) as db:
        row = db.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO responses %'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def add_response(url: str, response_id: str) -> None:
    """A running response of the owner '' on the database at `url`, as a test needs one."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO responses (id, owner, status, request, model)"
            " VALUES (%s, '', 'in_progress', %s, 'demo')",
            (response_id, Jsonb({"model": "demo", "input": "hi"})),
        )
