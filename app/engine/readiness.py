"""Whether this process can serve requests now: the database answers within a short
timeout, and every migration has been applied to it.

Liveness needs none of this (the process answers at all); readiness is what a load balancer
asks before sending it traffic.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from app.store.db import within
from app.store.migrate import pending_migrations


@dataclass(frozen=True)
class NotReady:
    reason: str  # database_unavailable, migrations_pending, shutting_down
    message: str


async def check_readiness(pool: AsyncConnectionPool, timeout_s: float) -> NotReady | None:
    """None when ready; otherwise why not."""

    async def pending() -> list[str]:
        async with pool.connection(timeout=timeout_s) as conn:
            return await pending_migrations(conn)

    try:
        missing = await within(pending(), timeout_s)
    except (TimeoutError, psycopg.OperationalError, PoolTimeout) as exc:
        return NotReady(
            "database_unavailable",
            f"The database did not answer within {timeout_s:g}s ({type(exc).__name__}).",
        )
    if missing:
        return NotReady(
            "migrations_pending",
            f"Migrations not applied: {', '.join(missing)}. Run `python -m app migrate`.",
        )
    return None
