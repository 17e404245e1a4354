"""The process's one Postgres connection pool."""

from __future__ import annotations

import asyncio
import contextlib
import select
from collections.abc import AsyncIterator, Callable, Coroutine
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


async def _check_unbroken(conn: AsyncConnection) -> None:
    """Refuse a pooled connection that the server has closed, without a round trip.

    An idle connection has nothing to read: if its socket is readable, the server closed it
    (a restart, a crash) or wrote to say it is going away, and the pool opens another one
    instead. A `SELECT 1` on every checkout would double the statements of most requests;
    a connection lost without a word (a network partition) fails its first query, which the
    store retries on a new connection like any other outage.
    """
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    if _readable(conn.pgconn.socket):
        # Closed here, so that the pool discards it rather than taking it back as good.
        await conn.close()
        raise psycopg.OperationalError("the server closed the connection")


def _readable(fd: int) -> bool:
    """Whether the socket `fd` has something to read, without waiting. With poll, not
    select: a process serving a thousand streams opens sockets numbered past select's limit
    (1024), and select refuses them — every check of such a connection failed, and the pool
    kept its callers waiting for 30 s while its connections sat idle."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


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
        check=_check_unbroken,
        open=False,
        name=name,
    )


@contextlib.asynccontextmanager
async def connection_in_turn(
    pool: AsyncConnectionPool, patience_s: float, reachable: Callable[[], bool]
) -> AsyncIterator[AsyncConnection]:
    """A pooled connection for work already admitted (an inline create under its process's
    limit): while the database is `reachable` the pool is only busy, and it waits its turn,
    up to `patience_s`; when it is not, it gives up after the pool's own timeout, as any
    request does.

    A burst admitted under MAX_INLINE_PER_PROCESS so queues behind its own runs' writes
    instead of answering 503, and an outage is still told quickly. It waits as one client of
    the pool from start to end, so it keeps its place in the pool's queue: asking again at
    each of the pool's timeouts put it behind every write queued meanwhile, and under a
    burst on a busy machine some creates never got to the front.
    """
    getting = asyncio.ensure_future(pool.getconn(timeout=patience_s))
    try:
        while not getting.done():
            await asyncio.wait([getting], timeout=pool.timeout)
            if not getting.done() and not reachable():
                raise PoolTimeout("the database does not answer")
        conn = getting.result()
    except BaseException:
        if getting.done() and not getting.cancelled() and getting.exception() is None:
            await pool.putconn(getting.result())  # got, just as this wait was given up
        getting.cancel()  # the pool gives back a connection it was handing over
        raise
    try:
        async with conn:  # as `pool.connection()` does: ends the connection's transaction
            yield conn
    finally:
        await pool.putconn(conn)
