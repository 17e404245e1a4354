"""The process's one Postgres connection pool."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from app.config import Settings

#: What a lost or unreachable database raises: a connection that broke, or none to be had.
DATABASE_OUTAGES: tuple[type[Exception], ...] = (psycopg.OperationalError, PoolTimeout)

_T = TypeVar("_T")


async def within(query: Coroutine[Any, Any, _T], timeout_s: float) -> _T:
    """What `query` returns, if it does within `timeout_s`; TimeoutError otherwise.

    Time running out does not cancel it: a query cut off mid-way would leave psycopg to
    cancel it on a connection that is back in the pool by then. It ends by itself, bounded
    by the pool's own timeout, and a failure it meets after that is nobody's business.
    """
    task = asyncio.ensure_future(query)
    task.add_done_callback(_forget_outcome)
    return await asyncio.wait_for(asyncio.shield(task), timeout_s)


def _forget_outcome(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


async def _configure(conn: AsyncConnection) -> None:
    # Every statement outside an explicit transaction commits on its own.
    await conn.set_autocommit(True)


def create_pool(settings: Settings, *, name: str = "ferry") -> AsyncConnectionPool:
    """A pool that is not yet open; `await pool.open(wait=True)` before use."""
    if not settings.database_url:
        raise RuntimeError("DATABASE_URL is not set")
    return AsyncConnectionPool(
        conninfo=settings.database_url,
        min_size=settings.db_pool_min_size,
        max_size=settings.db_pool_max_size,
        kwargs={"row_factory": dict_row},
        # Waiting for a connection is bounded: during an outage, requests fail fast (503).
        timeout=settings.db_pool_timeout_s,
        configure=_configure,
        # Replace connections the server closed (e.g. after a Postgres restart).
        check=AsyncConnectionPool.check_connection,
        open=False,
        name=name,
    )
