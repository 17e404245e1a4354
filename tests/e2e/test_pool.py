"""The connection pool after the server dropped its connections: none of them is handed out
again, and no checkout costs a round trip of its own; and a connection on a socket numbered
past select()'s limit is handed out like any other."""

from __future__ import annotations

import asyncio
import os
import resource

import psycopg
import pytest

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


# Past select()'s limit (FD_SETSIZE): a socket numbered this high is refused by select.
HIGH_FD = 1100


def test_a_connection_on_a_socket_numbered_past_1024_is_handed_out_at_once(
    postgres_admin_url: str,
) -> None:
    """A process serving a thousand streams opens its pool's connections on sockets numbered
    past 1024: the pool's check of them must work there, or every checkout waits."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft <= HIGH_FD + 50:
        pytest.skip(f"this process may open only {soft} files")
    fillers = []
    try:
        while (fd := os.open(os.devnull, os.O_RDONLY)) < HIGH_FD:
            fillers.append(fd)
        fillers.append(fd)
        with scratch_database(postgres_admin_url) as database_url:
            sockets, answers = asyncio.run(_checkouts_on_high_sockets(database_url))
    finally:
        for fd in fillers:
            os.close(fd)
    assert min(sockets) > 1024
    assert answers == [1, 1, 1]


async def _checkouts_on_high_sockets(database_url: str) -> tuple[list[int], list[int]]:
    settings = Settings(
        database_url=database_url, db_pool_min_size=1, db_pool_max_size=1, db_pool_timeout_s=2
    )
    pool = create_pool(settings, name="pool-test")
    await pool.open(wait=True)
    try:
        sockets, answers = [], []
        for _ in range(3):
            async with pool.connection() as conn:
                sockets.append(conn.pgconn.socket)
                cursor = await conn.execute("SELECT 1 AS one")
                row = await cursor.fetchone()
                assert row is not None
                answers.append(row["one"])
        assert pool.get_stats().get("connections_lost", 0) == 0
        return sockets, answers
    finally:
        await pool.close()
