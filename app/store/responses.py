"""Reads and writes of responses, their steps and their event log.

Each method is one committed transaction: the row is the truth at every moment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from app.store.queries import QUERIES

TERMINAL_STATUSES = frozenset({"completed", "failed", "incomplete", "cancelled"})


@dataclass(frozen=True)
class StoredResponse:
    id: str
    owner: str
    status: str
    request: dict[str, Any]
    model: str
    service_tier: str
    background: bool
    stream: bool
    previous_response_id: str | None
    output: list[dict[str, Any]] | None
    usage: dict[str, Any] | None
    usage_missing: bool
    error: dict[str, Any] | None
    incomplete_details: dict[str, Any] | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class StoredStep:
    response_id: str
    ordinal: int
    kind: str
    status: str
    request: dict[str, Any] | None
    result: dict[str, Any] | None
    usage: dict[str, Any] | None
    error: dict[str, Any] | None
    started_at: datetime
    completed_at: datetime | None


@dataclass(frozen=True)
class NewResponse:
    id: str
    owner: str
    status: str
    request: dict[str, Any]
    model: str
    service_tier: str
    background: bool
    stream: bool
    previous_response_id: str | None
    lease_owner: str | None = None
    lease_ttl_s: float = 0.0


def _json(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


class ResponseStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def insert(self, new: NewResponse, conn: AsyncConnection | None = None) -> StoredResponse:
        """Insert a response row; on `conn` when given, so it joins the caller's transaction."""
        params = {**new.__dict__, "request": Jsonb(new.request)}
        if conn is not None:
            return StoredResponse(**await _fetch_one(conn, "insert_response", params))
        async with self.pool.connection() as own:
            return StoredResponse(**await _fetch_one(own, "insert_response", params))

    async def get(self, response_id: str, owner: str) -> StoredResponse | None:
        async with self.pool.connection() as conn:
            row = await _fetch_optional(conn, "get_response", {"id": response_id, "owner": owner})
        return StoredResponse(**row) if row else None

    async def mark_in_progress(self, response_id: str) -> StoredResponse | None:
        async with self.pool.connection() as conn:
            row = await _fetch_optional(conn, "mark_in_progress", {"id": response_id})
        return StoredResponse(**row) if row else None

    async def renew_lease(self, response_id: str, lease_owner: str, ttl_s: float) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                QUERIES["renew_lease"],
                {"id": response_id, "lease_owner": lease_owner, "lease_ttl_s": ttl_s},
            )

    async def finish(
        self,
        response_id: str,
        *,
        status: str,
        output: list[dict[str, Any]],
        usage: dict[str, Any] | None,
        usage_missing: bool = False,
        error: dict[str, Any] | None = None,
        incomplete_details: dict[str, Any] | None = None,
    ) -> StoredResponse | None:
        """Move a running response to a terminal state; None if it had already ended."""
        params = {
            "id": response_id,
            "status": status,
            "output": Jsonb(output),
            "usage": _json(usage),
            "usage_missing": usage_missing,
            "error": _json(error),
            "incomplete_details": _json(incomplete_details),
        }
        async with self.pool.connection() as conn:
            row = await _fetch_optional(conn, "finish_response", params)
        return StoredResponse(**row) if row else None

    async def start_step(
        self, response_id: str, ordinal: int, kind: str, request: dict[str, Any] | None
    ) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                QUERIES["start_step"],
                {
                    "response_id": response_id,
                    "ordinal": ordinal,
                    "kind": kind,
                    "request": _json(request),
                },
            )

    async def finish_step(
        self,
        response_id: str,
        ordinal: int,
        *,
        status: str,
        result: dict[str, Any],
        usage: dict[str, Any] | None,
        error: dict[str, Any] | None,
    ) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                QUERIES["finish_step"],
                {
                    "response_id": response_id,
                    "ordinal": ordinal,
                    "status": status,
                    "result": Jsonb(result),
                    "usage": _json(usage),
                    "error": _json(error),
                },
            )

    async def steps(self, response_id: str) -> list[StoredStep]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(QUERIES["list_steps"], {"response_id": response_id})
            return [StoredStep(**row) for row in await cur.fetchall()]

    async def append_events(self, response_id: str, events: list[dict[str, Any]]) -> None:
        """Append a batch of already-numbered events in one transaction."""
        if not events:
            return
        rows = [
            {"sequence_number": e["sequence_number"], "type": e["type"], "data": e} for e in events
        ]
        async with self.pool.connection() as conn:
            await conn.execute(
                QUERIES["append_events"], {"response_id": response_id, "events": Jsonb(rows)}
            )

    async def events_after(self, response_id: str, after: int) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                QUERIES["list_events_after"], {"response_id": response_id, "after": after}
            )
            return [row["data"] for row in await cur.fetchall()]


async def _fetch_optional(
    conn: AsyncConnection, name: str, params: dict[str, Any]
) -> dict[str, Any] | None:
    # The caller's connection may come from elsewhere (e.g. procrastinate): ask for dicts here.
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(QUERIES[name], params)
        return await cur.fetchone()


async def _fetch_one(conn: AsyncConnection, name: str, params: dict[str, Any]) -> dict[str, Any]:
    row = await _fetch_optional(conn, name, params)
    if row is None:
        raise LookupError(f"query {name} returned no row")
    return row
