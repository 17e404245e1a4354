"""Reads and writes of responses, their steps and their event log.

Each method is one committed transaction: the row is the truth at every moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from app import metrics
from app.shapes import Event, Item, JsonObject
from app.statuses import TERMINAL_EVENT_TYPES, StepKind
from app.store import event_codec
from app.store.conversations import append_ended_response, context_items
from app.store.queries import QUERIES
from app.store.rows import (
    FORGOTTEN_REQUEST,
    NewResponse,
    Orphan,
    Outcome,
    QueueStats,
    StepOutcome,
    StoredResponse,
    StoredStep,
)
from app.store.webhooks import NO_WEBHOOKS, WebhookOutbox

log = logging.getLogger(__name__)

# An arbitrary constant that names "the orphan sweep" among advisory locks.
ORPHAN_SWEEP_LOCK_KEY = 0x4645_5252_5902
# Backoff of a patient store's retries while the database is away.
_FIRST_RETRY_S = 0.1
_LONGEST_RETRY_S = 2.0


def _event_batch(response_id: str, events: list[Event]) -> dict[str, Any]:
    """The parameters that store `events` as one batch of the response's log."""
    codec, blob = event_codec.encode(events)
    last = events[-1]["sequence_number"]
    return {
        "response_id": response_id,
        "first": events[0]["sequence_number"],
        "last": last,
        "closed": events[-1]["type"] in TERMINAL_EVENT_TYPES,
        "codec": codec,
        "events": blob,
        "payload": f"{response_id}:{last}",
    }


def _json(value: Mapping[str, Any] | list[Any] | None) -> Jsonb | None:
    return None if value is None else Jsonb(value)


class ResponseStore:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        wait_s: float | None = None,
        outbox: WebhookOutbox = NO_WEBHOOKS,
    ) -> None:
        """With `wait_s`, the store is patient, for running work: it waits that long for a
        pooled connection, and a query whose connection is lost (Postgres restarting) is
        tried again on a new one until `wait_s` has passed. Without, a request gets the
        pool's quick timeout and the first error. Every query a patient store repeats is
        idempotent: a write that did commit before its answer was lost changes nothing
        the second time. `outbox` enqueues the webhook deliveries of each ending.
        """
        self.pool = pool
        self.wait_s = wait_s
        self.outbox = outbox

    async def _patiently(self, attempt: Callable[[], Awaitable[_T]]) -> _T:
        if self.wait_s is None:
            return await attempt()
        deadline = time.monotonic() + self.wait_s
        delay = _FIRST_RETRY_S
        while True:
            try:
                return await attempt()
            except psycopg.OperationalError as exc:
                if time.monotonic() + delay >= deadline:
                    raise
                log.warning("lost the database; trying again", extra={"error": type(exc).__name__})
            await asyncio.sleep(delay)
            delay = min(delay * 2, _LONGEST_RETRY_S)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A connection inside one transaction: pass it as `conn=` to join several writes."""
        async with self.pool.connection(self.wait_s) as conn, conn.transaction():
            yield conn

    async def _query(
        self,
        name: str,
        params: dict[str, Any],
        conn: AsyncConnection | None,
        fetch: Callable[[AsyncCursor[DictRow]], Awaitable[_T]],
    ) -> _T:
        if conn is not None:
            return await _run(conn, name, params, fetch)

        async def on_own_connection() -> _T:
            async with self.pool.connection(self.wait_s) as own:
                return await _run(own, name, params, fetch)

        # Our queries are short: one whose caller is cancelled (a client gone) finishes
        # anyway. Cancelling it mid-way would make psycopg send the server a cancel request,
        # which can land on the connection's next statement after it is back in the pool.
        return await asyncio.shield(self._patiently(on_own_connection))

    async def _one(
        self, name: str, params: dict[str, Any], conn: AsyncConnection | None = None
    ) -> DictRow | None:
        return await self._query(name, params, conn, _fetch_one)

    async def _all(
        self, name: str, params: dict[str, Any], conn: AsyncConnection | None = None
    ) -> list[DictRow]:
        return await self._query(name, params, conn, _fetch_all)

    async def _execute(
        self, name: str, params: dict[str, Any], conn: AsyncConnection | None = None
    ) -> None:
        await self._query(name, params, conn, _fetch_nothing)

    async def insert(self, new: NewResponse, conn: AsyncConnection | None = None) -> StoredResponse:
        row = await self._one(
            "insert_response", {**new.__dict__, "request": Jsonb(new.request)}, conn
        )
        assert row is not None
        return StoredResponse.from_row(row)

    async def get(self, response_id: str, owner: str) -> StoredResponse | None:
        row = await self._one("get_response", {"id": response_id, "owner": owner})
        return StoredResponse.from_row(row) if row else None

    async def get_any_owner(self, response_id: str) -> StoredResponse | None:
        row = await self._one("get_response_any_owner", {"id": response_id})
        return StoredResponse.from_row(row) if row else None

    async def set_job_id(self, response_id: str, job_id: int, conn: AsyncConnection) -> None:
        await self._execute("set_job_id", {"id": response_id, "job_id": job_id}, conn)

    async def mark_in_progress(self, response_id: str) -> StoredResponse | None:
        row = await self._one("mark_in_progress", {"id": response_id})
        return StoredResponse.from_row(row) if row else None

    async def renew_lease(self, response_id: str, lease_owner: str, ttl_s: float) -> bool:
        """Extend the lease; False when it is no longer ours (it lapsed and was taken over)."""
        params = {"id": response_id, "lease_owner": lease_owner, "lease_ttl_s": ttl_s}
        return await self._one("renew_lease", params) is not None

    async def finish(
        self,
        response_id: str,
        outcome: Outcome,
        conn: AsyncConnection | None = None,
        *,
        forgets_content: bool = False,
        appends_to_conversation: bool = False,
        background: bool = False,
    ) -> StoredResponse | None:
        """Move a running response to a terminal state; None if it had already ended.

        A `store: false` response's content is forgotten too; the row returned still holds
        it, for the one answer its creator gets. A response on a conversation has its input
        and output appended to it, and its webhook deliveries are enqueued (see
        `WebhookOutbox`). Told `forgets_content` or `appends_to_conversation`, or that the
        response is `background` (which may have deliveries), all of it happens in one
        transaction; otherwise the ending is one statement (no BEGIN and COMMIT), and a
        response found not to be kept after all is forgotten right after it.
        """
        if conn is not None:
            return await self._finish(response_id, outcome, conn)

        async def in_own_transaction() -> StoredResponse | None:
            async with self.transaction() as own:
                return await self._finish(response_id, outcome, own)

        async def in_one_statement() -> StoredResponse | None:
            async with self.pool.connection(self.wait_s) as own:
                return await self._finish(response_id, outcome, own)

        transactional = (
            forgets_content or appends_to_conversation or self.outbox.may_deliver(background)
        )
        ending = in_own_transaction if transactional else in_one_statement
        # Shielded, as every query is: an ending whose caller is cancelled still commits.
        return await asyncio.shield(self._patiently(ending))

    async def _finish(
        self, response_id: str, outcome: Outcome, conn: AsyncConnection
    ) -> StoredResponse | None:
        params = {
            "id": response_id,
            "status": outcome.status,
            "output": Jsonb(outcome.output),
            "usage": _json(outcome.usage),
            "usage_missing": outcome.usage_missing,
            "error": _json(outcome.error),
            "incomplete_details": _json(outcome.incomplete_details),
            "upstream_refusal": _json(outcome.upstream_refusal),
        }
        row = await self._one("finish_response", params, conn)
        if row is None:
            return None
        final = StoredResponse.from_row(row)
        metrics.response_ended(final, final.status, _duration_s(final))
        await append_ended_response(conn, final)
        if not final.is_kept:
            params = {"id": response_id, "request": Jsonb(FORGOTTEN_REQUEST)}
            await self._execute("forget_content", params, conn)
        await self.outbox.enqueue(final, conn)
        return final

    async def conversation_items(self, conversation_id: str, before: int) -> list[Item]:
        """The items of a conversation below position `before`: a response's context."""

        async def attempt() -> list[Item]:
            async with self.pool.connection(self.wait_s) as conn:
                return await context_items(conn, conversation_id, before)

        return await asyncio.shield(self._patiently(attempt))

    async def delete(self, response_id: str, owner: str) -> bool:
        """Delete a response with its steps and events; False if there was none."""
        return await self._one("delete_response", {"id": response_id, "owner": owner}) is not None

    async def start_step(
        self, response_id: str, ordinal: int, kind: StepKind, request: JsonObject | None
    ) -> None:
        params = {
            "response_id": response_id,
            "ordinal": ordinal,
            "kind": kind,
            "request": _json(request),
        }
        # A model call's row need not be on disk before the call goes on (see the query).
        query = "start_model_step" if kind == StepKind.MODEL_CALL else "start_step"
        await self._execute(query, params)

    async def record_step_items(self, response_id: str, ordinal: int, items: list[Item]) -> None:
        params = {"response_id": response_id, "ordinal": ordinal, "result": Jsonb({"items": items})}
        await self._execute("record_step_items", params)

    async def finish_step(self, response_id: str, ordinal: int, outcome: StepOutcome) -> None:
        params = {
            "response_id": response_id,
            "ordinal": ordinal,
            "status": outcome.status,
            "result": Jsonb(outcome.result),
            "usage": _json(outcome.usage),
            "error": _json(outcome.error),
        }
        await self._execute("finish_step", params)

    async def steps(self, response_id: str) -> list[StoredStep]:
        rows = await self._all("list_steps", {"response_id": response_id})
        return [StoredStep.from_row(row) for row in rows]

    async def append_events(
        self, response_id: str, events: list[Event], conn: AsyncConnection | None = None
    ) -> bool:
        """Append numbered events and wake the tailers, unless the log is already closed.

        The response row is locked first, so a worker's flush and a cancel writing the
        terminal event take turns; events after the terminal one, or overlapping those already
        written (from a run that lost the response), are dropped.
        Returns whether the events were written.
        """
        if not events:
            return True
        if conn is not None:
            return await self._append_events(response_id, events, conn)

        async def in_own_transaction() -> bool:
            async with self.transaction() as own:
                return await self._append_events(response_id, events, own)

        return await self._patiently(in_own_transaction)

    async def _append_events(
        self, response_id: str, events: list[Event], conn: AsyncConnection
    ) -> bool:
        if await self._one("lock_response", {"id": response_id}, conn) is None:
            return False
        params = _event_batch(response_id, events)
        written = await self._one("append_event_batch", params, conn) is not None
        if written:
            metrics.event_log_written(len(events))
        return written

    async def start_event_log(
        self, response_id: str, events: list[Event], conn: AsyncConnection
    ) -> None:
        """The first events of the response `conn`'s transaction has just inserted (nobody
        listens to its log before that commits)."""
        await self._execute("start_event_log", _event_batch(response_id, events), conn)
        metrics.event_log_written(len(events))

    async def last_sequence_number(
        self, response_id: str, conn: AsyncConnection | None = None
    ) -> int:
        row = await self._one("last_sequence_number", {"response_id": response_id}, conn)
        return int(row["last"]) if row else -1

    async def events_after(self, response_id: str, after: int) -> list[Event]:
        params = {"response_id": response_id, "after": after}
        rows = await self._all("list_event_batches_after", params)
        return [
            event
            for row in rows
            for event in event_codec.decode(row["codec"], row["events"])
            if event["sequence_number"] > after
        ]

    async def find_idempotency_key(
        self, owner: str, key: str, ttl_s: float
    ) -> tuple[str, str] | None:
        """(request digest, response id) of a live claim on the key, if any."""
        row = await self._one("find_idempotency_key", {"owner": owner, "key": key, "ttl_s": ttl_s})
        return (row["request_digest"], row["response_id"]) if row else None

    async def claim_idempotency_key(
        self,
        owner: str,
        key: str,
        digest: str,
        response_id: str,
        ttl_s: float,
        conn: AsyncConnection,
    ) -> bool:
        """Claim the key for `response_id` in the caller's transaction; False if taken."""
        params = {
            "owner": owner,
            "key": key,
            "digest": digest,
            "response_id": response_id,
            "ttl_s": ttl_s,
        }
        return await self._one("claim_idempotency_key", params, conn) is not None

    async def count_queued_background(
        self, owner: str, conn: AsyncConnection | None = None
    ) -> tuple[int, int]:
        """Queued background responses: (all, this owner's)."""
        row = await self._one("count_queued_background", {"owner": owner}, conn)
        assert row is not None
        return int(row["total"]), int(row["mine"])

    async def overrunning_jobs(self, task_name: str, max_run_s: float) -> list[tuple[int, str]]:
        rows = await self._all("overrunning_jobs", {"task_name": task_name, "max_run_s": max_run_s})
        return [(int(r["job_id"]), str(r["response_id"])) for r in rows]

    async def lapsed_inline_leases(self, limit: int = 100) -> list[str]:
        return [r["id"] for r in await self._all("lapsed_inline_leases", {"limit": limit})]

    async def take_over_lease(self, response_id: str, conn: AsyncConnection) -> bool:
        """Clear a lapsed lease in the caller's transaction; False if it is not lapsed now."""
        return await self._one("take_over_lease", {"id": response_id}, conn) is not None

    async def orphaned_responses(
        self, stall_s: float, conn: AsyncConnection, limit: int = 100
    ) -> list[Orphan]:
        """Running responses nothing runs, with the sweep's lock held (see `recover`)."""
        await self._one("lock_orphan_sweep", {"key": ORPHAN_SWEEP_LOCK_KEY}, conn)
        params = {"stall_s": stall_s, "limit": limit}
        rows = await self._all("orphaned_responses", params, conn)
        return [Orphan(r["id"], int(r["recoveries"]), r["service_tier"]) for r in rows]

    async def count_recovery(self, response_id: str, conn: AsyncConnection) -> None:
        """One more recovery of the response, in the caller's transaction; a lapsed lease
        goes with it (the response is queued now)."""
        await self._execute("count_recovery", {"id": response_id}, conn)

    async def find_item(self, owner: str, item_id: str) -> Item | None:
        """The item with this id in the input or output of one of the owner's responses."""
        row = await self._one("find_item", {"owner": owner, "item_id": item_id})
        return row["item"] if row else None

    async def sealing_key(self, candidate: str) -> str:
        """The reasoning sealing key kept in the database; `candidate` becomes it when there
        is none yet. Two statements, so the read sees a key a concurrent twin committed."""
        await self._execute("insert_sealing_key", {"candidate": candidate})
        row = await self._one("get_sealing_key", {})
        assert row is not None
        return str(row["key"])

    async def queue_depth(self, queue: str) -> int:
        row = await self._one("queue_depth", {"queue": queue})
        return int(row["depth"]) if row else 0

    async def queue_stats(self) -> dict[str, QueueStats]:
        """Each non-empty job queue: its waiting jobs and the oldest one's wait."""
        rows = await self._all("queue_stats", {})
        return {r["queue"]: QueueStats(int(r["depth"]), float(r["oldest_age_s"])) for r in rows}


_T = TypeVar("_T")


def _duration_s(final: StoredResponse) -> float | None:
    """From creation to the end, both stamped by the database's clock."""
    if final.completed_at is None:
        return None
    return (final.completed_at - final.created_at).total_seconds()


async def _run(
    conn: AsyncConnection,
    name: str,
    params: dict[str, Any],
    fetch: Callable[[AsyncCursor[DictRow]], Awaitable[_T]],
) -> _T:
    # The connection may come from elsewhere (e.g. procrastinate): ask for dicts here.
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(QUERIES[name], params)
        return await fetch(cur)


async def _fetch_one(cur: AsyncCursor[DictRow]) -> DictRow | None:
    return await cur.fetchone()


async def _fetch_all(cur: AsyncCursor[DictRow]) -> list[DictRow]:
    return await cur.fetchall()


async def _fetch_nothing(cur: AsyncCursor[DictRow]) -> None:
    return None
