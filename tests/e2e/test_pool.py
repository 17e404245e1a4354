"""The connection pool after the server dropped its connections: none of them is handed out
again, and no checkout costs a round trip of its own."""

from __future__ import annotations

import asyncio

import psycopg

from app.config import Settings
from app.store.db import create_pool
from tests.support.database import scratch_database


def test_connections_the_server_dropped_are_replaced_not_handed_out(
    postgres_admin_url: str,
) -> None:
    with scratch_database(postgres_admin_url) as database_url:
        assert asyncio.run(_checkouts_after_the_server_dropped_all(database_url)) == [1] * 6


async def _checkouts_after_the_server_dropped_all(database_url: str) -> list[int]:
    settings = Settings(
        database_url=database_url, db_pool_min_size=3, db_pool_max_size=3, db_pool_timeout_s=5
    )
    pool = create_pool(settings, name="pool-test")
    await pool.open(wait=True)
    try:
        with psycopg.connect(database_url, autocommit=True) as admin:
            # Every pooled connection goes, as in a Postgres restart (waiting until gone).
            admin.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend'"
            )
        answers = []
        for _ in range(6):  # each checkout gets a live connection, at the first try
            async with pool.connection() as conn:
                cursor = await conn.execute("SELECT 1 AS one")
                row = await cursor.fetchone()
                assert row is not None
                answers.append(row["one"])
        assert pool.get_stats()["connections_lost"] >= 1
        return answers
    finally:
        await pool.close()
