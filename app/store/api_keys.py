"""Reads and writes of the API keys kept in the database, and of their owners' counters.

A key's digest is stored, never the key. Each method is one statement, or one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from app.store.queries import fetch_rows, load_queries

QUERIES = load_queries(Path(__file__).with_name("api_keys.sql"))
# An arbitrary constant that names "an owner's creates" among advisory locks.
OWNER_LOCK_CLASS = 0x4B45_5953


@dataclass(frozen=True)
class StoredKey:
    id: str
    name: str
    owner: str
    prefix: str
    digest: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    max_concurrent_responses: int | None
    max_requests_per_minute: int | None
    admin: bool = False  # also opens the operator console

    @classmethod
    def from_row(cls, row: DictRow) -> StoredKey:
        return cls(**row)


@dataclass(frozen=True)
class NewKey:
    id: str
    name: str
    owner: str
    prefix: str
    digest: str
    expires_in_days: float | None
    max_concurrent_responses: int | None
    max_requests_per_minute: int | None
    admin: bool = False


@dataclass(frozen=True)
class Window:
    """An owner's requests in the current minute, and the seconds until the next one."""

    requests: int
    seconds_left: float


class KeyStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def _rows(
        self, name: str, params: dict[str, Any], conn: AsyncConnection | None = None
    ) -> list[DictRow]:
        if conn is not None:
            return await _run(conn, name, params)
        async with self.pool.connection() as own:
            return await _run(own, name, params)

    async def insert(self, new: NewKey) -> StoredKey:
        (row,) = await self._rows("insert_key", dict(new.__dict__))
        return StoredKey.from_row(row)

    async def all(self) -> list[StoredKey]:
        return [StoredKey.from_row(row) for row in await self._rows("list_keys", {})]

    async def active_named(self, name: str) -> list[StoredKey]:
        rows = await self._rows("active_keys_named", {"name": name})
        return [StoredKey.from_row(row) for row in rows]

    async def revoke(self, target: str) -> list[StoredKey]:
        """Revoke the active keys named `target`, or the one whose prefix it is."""
        rows = await self._rows("revoke_keys", {"target": target})
        return [StoredKey.from_row(row) for row in rows]

    async def find(self, digest: str) -> StoredKey | None:
        rows = await self._rows("find_key", {"digest": digest})
        return StoredKey.from_row(rows[0]) if rows else None

    async def any(self) -> bool:
        (row,) = await self._rows("any_keys", {})
        return bool(row["any"])

    async def touch(self, key_id: str) -> None:
        await self._rows("touch_key", {"id": key_id})

    async def count_request(self, owner: str) -> Window:
        (row,) = await self._rows("count_request", {"owner": owner})
        return Window(requests=row["requests"], seconds_left=row["seconds_left"])

    async def count_running_locked(self, owner: str, conn: AsyncConnection) -> int:
        """The owner's queued and running responses, counted under a lock on the owner held
        until `conn`'s transaction ends: the caller inserts its response before letting go."""
        await _run(conn, "lock_owner", {"lock_class": OWNER_LOCK_CLASS, "owner": owner})
        (row,) = await _run(conn, "count_running", {"owner": owner})
        return int(row["running"])


async def _run(conn: AsyncConnection, name: str, params: dict[str, Any]) -> list[DictRow]:
    return await fetch_rows(conn, QUERIES[name], params)
