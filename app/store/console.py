"""What the operator console reads: responses of every owner, the queues, the workers and
the jobs that ran each response; and the secret its sessions are signed with.

Each method is one statement on a pooled connection, read as typed rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from app.shapes import ErrorInfo
from app.statuses import ResponseStatus
from app.store.queries import fetch_rows, load_queries
from app.store.rows import StoredResponse, StoredStep

QUERIES = load_queries(Path(__file__).with_name("console.sql"))


@dataclass(frozen=True)
class StatusCount:
    status: ResponseStatus
    last_hour: int
    last_day: int


@dataclass(frozen=True)
class QueueState:
    queue: str
    depth: int
    oldest_s: float | None  # how long the longest-waiting job has waited; None: none waits


@dataclass(frozen=True)
class InlineRun:
    """A response an API process runs itself, under its lease."""

    id: str
    owner: str
    model: str
    stream: bool
    lease_owner: str
    lease_expires_at: datetime
    created_at: datetime
    started_at: datetime | None


@dataclass(frozen=True)
class RunningJob:
    job_id: int
    queue: str
    response_id: str | None
    attempts: int


@dataclass(frozen=True)
class WorkerState:
    id: int
    last_heartbeat: datetime
    silent_s: float
    jobs: list[RunningJob]


@dataclass(frozen=True)
class ResponseLine:
    """A response as one line of a list: what tells it apart, not its content."""

    id: str
    owner: str
    status: ResponseStatus
    model: str
    service_tier: str
    background: bool
    stream: bool
    created_at: datetime
    completed_at: datetime | None
    error: ErrorInfo | None
    not_kept: bool  # created with `store: false`

    @classmethod
    def from_row(cls, row: DictRow) -> ResponseLine:
        return cls(
            **{**row, "status": ResponseStatus(row["status"]), "not_kept": bool(row["not_kept"])}
        )


@dataclass(frozen=True)
class ResponseFilter:
    """Which responses a list shows; None: any. `owners` are owners to match, and with them
    owners starting with `owner_prefix` (an empty list and no prefix match nothing);
    `before` is the (created_at, id) a page starts below."""

    status: ResponseStatus | None = None
    model: str | None = None
    owners: list[str] | None = None
    owner_prefix: str | None = None
    background: bool | None = None
    stream: bool | None = None
    flex: bool | None = None
    since: datetime | None = None
    id_prefix: str | None = None
    before: tuple[datetime, str] | None = None


@dataclass(frozen=True)
class OwnerKeys:
    owner: str
    name: str
    prefixes: list[str]


@dataclass(frozen=True)
class JobEvent:
    job_id: int
    queue: str
    type: str  # procrastinate's event type: deferred, started, deferred_for_retry, ...
    at: datetime


class ConsoleStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def _rows(self, name: str, params: dict[str, Any] | None = None) -> list[DictRow]:
        async with self.pool.connection() as conn:
            return await fetch_rows(conn, QUERIES[name], params or {})

    async def status_counts(self) -> list[StatusCount]:
        return [
            StatusCount(ResponseStatus(r["status"]), int(r["last_hour"]), int(r["last_day"]))
            for r in await self._rows("status_counts")
        ]

    async def queue_states(self, queues: list[str]) -> list[QueueState]:
        rows = await self._rows("queue_states", {"queues": queues})
        return [QueueState(r["queue"], int(r["depth"]), r["oldest_s"]) for r in rows]

    async def inline_running(self, limit: int) -> tuple[list[InlineRun], int]:
        """The newest `limit` inline runs, and how many there are in all."""
        rows = await self._rows("inline_running", {"limit": limit})
        total = int(rows[0]["total"]) if rows else 0
        return [InlineRun(**{k: v for k, v in r.items() if k != "total"}) for r in rows], total

    async def workers(self) -> list[WorkerState]:
        return [
            WorkerState(
                id=int(r["id"]),
                last_heartbeat=r["last_heartbeat"],
                silent_s=float(r["silent_s"]),
                jobs=[RunningJob(**job) for job in r["jobs"]],
            )
            for r in await self._rows("workers")
        ]

    async def latest_failures(self, limit: int) -> list[ResponseLine]:
        rows = await self._rows("latest_failures", {"limit": limit})
        return [ResponseLine.from_row(r) for r in rows]

    async def responses(self, where: ResponseFilter, limit: int) -> list[ResponseLine]:
        before_at, before_id = where.before or (None, None)
        params = {
            "status": where.status,
            "model": where.model,
            "owners": where.owners,
            "owner_prefix": where.owner_prefix,
            "background": where.background,
            "stream": where.stream,
            "flex": where.flex,
            "since": where.since,
            "id_prefix": where.id_prefix,
            "before_at": before_at,
            "before_id": before_id,
            "limit": limit,
        }
        return [ResponseLine.from_row(r) for r in await self._rows("list_responses", params)]

    async def owners_of_keys(self, text: str) -> list[str]:
        return [r["owner"] for r in await self._rows("owners_of_keys", {"text": text})]

    async def keys_of_owners(self, owners: list[str]) -> list[OwnerKeys]:
        rows = await self._rows("keys_of_owners", {"owners": owners})
        return [OwnerKeys(r["owner"], r["name"], list(r["prefixes"])) for r in rows]

    async def response(self, response_id: str) -> StoredResponse | None:
        rows = await self._rows("response", {"id": response_id})
        return StoredResponse.from_row(rows[0]) if rows else None

    async def steps(self, response_id: str) -> list[StoredStep]:
        return [StoredStep.from_row(r) for r in await self._rows("steps", {"id": response_id})]

    async def job_events(self, response_id: str, task_name: str) -> list[JobEvent]:
        rows = await self._rows("job_events", {"id": response_id, "task_name": task_name})
        return [JobEvent(int(r["job_id"]), r["queue"], r["type"], r["at"]) for r in rows]

    async def last_logged_event(self, response_id: str) -> int | None:
        """The sequence number of the last event in the response's log; None: no log."""
        (row,) = await self._rows("event_log_size", {"id": response_id})
        return int(row["last"]) if row["batches"] else None

    async def console_secret(self, candidate: str) -> str:
        """The session secret kept in the database; `candidate` becomes it when there is
        none yet. Two statements, so the read sees a secret a concurrent twin committed."""
        await self._rows("insert_console_secret", {"candidate": candidate})
        (row,) = await self._rows("get_console_secret")
        return str(row["secret"])
