"""Webhook endpoints, their deliveries and each attempt at one; and the outbox that puts a
response's ending in the way of delivery, in the transaction that ends it.

A delivery is a row (`webhook_deliveries`) and a job (`ferry:deliver_webhook`) made together:
the row says what to send and how it went, the job makes the worker send it. A failed
attempt records itself and defers the next job in one transaction, so a pending delivery
always has a job waiting for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from app import ids
from app.store.queries import fetch_one, fetch_rows, load_queries
from app.store.queue import JobQueue
from app.store.rows import StoredResponse

WEBHOOK_QUERIES = load_queries(Path(__file__).with_name("webhooks.sql"))


@dataclass(frozen=True)
class StoredEndpoint:
    id: str
    owner: str
    name: str
    url: str
    event_types: list[str]
    signing_secret: str
    previous_secret: str | None
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: DictRow) -> StoredEndpoint:
        return cls(**row)


@dataclass(frozen=True)
class DueDelivery:
    """A pending delivery, with where it goes and the secrets that sign it now."""

    id: str  # the `webhook-id` header
    event_type: str
    payload: str
    attempts: int  # made so far
    age_s: float  # since it was made
    url: str
    signing_secret: str
    previous_secret: str | None  # still signing, after a rotation that kept it

    @property
    def signing_secrets(self) -> list[str]:
        return [self.signing_secret, *([self.previous_secret] if self.previous_secret else [])]

    @classmethod
    def from_row(cls, row: DictRow) -> DueDelivery:
        return cls(**row)


@dataclass(frozen=True)
class AttemptOutcome:
    """How one attempt went: the receiver's status, or why there was none."""

    status_code: int | None
    latency_ms: float
    error: str | None = None

    @property
    def delivered(self) -> bool:
        """A 2xx acknowledges; anything else (a redirect included) is a failure."""
        return self.status_code is not None and 200 <= self.status_code < 300


def event_payload(event_id: str, event_type: str, created_at: datetime, data: Any) -> str:
    """The body of a delivery, in the SDK's `*WebhookEvent` shape, as the text to sign."""
    event = {
        "id": event_id,
        "object": "event",
        "created_at": int(created_at.timestamp()),
        "type": event_type,
        "data": data,
    }
    return json.dumps(event, separators=(",", ":"))


def response_event_id(response_id: str, event_type: str) -> str:
    """The one event id of a response's ending: the same whoever computes it, however often."""
    digest = hashlib.sha256(f"{response_id}:{event_type}".encode()).hexdigest()
    return f"evt_{digest[:48]}"


async def _one(conn: AsyncConnection, name: str, params: dict[str, Any]) -> DictRow | None:
    return await fetch_one(conn, WEBHOOK_QUERIES[name], params)


async def _all(conn: AsyncConnection, name: str, params: dict[str, Any]) -> list[DictRow]:
    return await fetch_rows(conn, WEBHOOK_QUERIES[name], params)


class WebhookOutbox:
    """Enqueues the deliveries of a response's ending, in the transaction that ends it.

    A background response's ending is delivered (any response's, with
    WEBHOOK_ALL_RESPONSES) to each of its owner's endpoints subscribed to the event type.
    Without `jobs` (a store made for a test or a tool) nothing is ever delivered.
    """

    def __init__(self, jobs: JobQueue | None, *, all_responses: bool = False) -> None:
        self.jobs = jobs
        self.all_responses = all_responses

    def may_deliver(self, background: bool) -> bool:
        """Whether the ending of such a response may have deliveries, so that it must be one
        transaction; whether it does is for `enqueue` to find out, in that transaction."""
        return self.jobs is not None and (background or self.all_responses)

    async def enqueue(self, final: StoredResponse, conn: AsyncConnection) -> list[str]:
        """The deliveries made for `final`, just ended on `conn`, each with its job."""
        if self.jobs is None or not self.may_deliver(final.background):
            return []
        assert final.completed_at is not None, "only an ended response is announced"
        event_type = final.status.terminal_event_type  # `response.completed`, ...
        event_id = response_event_id(final.id, event_type)
        params = {
            "owner": final.owner,
            "event_id": event_id,
            "event_type": event_type,
            "response_id": final.id,
            "payload": event_payload(event_id, event_type, final.completed_at, {"id": final.id}),
        }
        delivery_ids = [row["id"] for row in await _all(conn, "insert_response_deliveries", params)]
        for delivery_id in delivery_ids:
            await self.jobs.defer_delivery(delivery_id, conn)
        return delivery_ids


#: The outbox of a store that delivers nothing.
NO_WEBHOOKS = WebhookOutbox(None)


class WebhookStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        async with self.pool.connection() as conn, conn.transaction():
            yield conn

    async def _one(
        self, name: str, params: dict[str, Any], conn: AsyncConnection | None = None
    ) -> DictRow | None:
        if conn is not None:
            return await _one(conn, name, params)
        async with self.pool.connection() as own:
            return await _one(own, name, params)

    async def _all(self, name: str, params: dict[str, Any]) -> list[DictRow]:
        async with self.pool.connection() as conn:
            return await _all(conn, name, params)

    # --- endpoints -------------------------------------------------------------------

    async def insert_endpoint(
        self, owner: str, *, name: str, url: str, event_types: list[str], signing_secret: str
    ) -> StoredEndpoint:
        params = {
            "id": ids.new_id("whe"),
            "owner": owner,
            "name": name,
            "url": url,
            "event_types": event_types,
            "signing_secret": signing_secret,
        }
        row = await self._one("insert_endpoint", params)
        assert row is not None
        return StoredEndpoint.from_row(row)

    async def get_endpoint(self, owner: str, endpoint_id: str) -> StoredEndpoint | None:
        row = await self._one("get_endpoint", {"id": endpoint_id, "owner": owner})
        return StoredEndpoint.from_row(row) if row else None

    async def list_endpoints(
        self, owner: str, *, limit: int, after: str | None
    ) -> list[StoredEndpoint]:
        """Up to `limit` of the owner's endpoints, newest first, after the one named."""
        rows = await self._all("list_endpoints", {"owner": owner, "after": after, "limit": limit})
        return [StoredEndpoint.from_row(row) for row in rows]

    async def update_endpoint(
        self,
        owner: str,
        endpoint_id: str,
        *,
        name: str | None,
        url: str | None,
        event_types: list[str] | None,
    ) -> StoredEndpoint | None:
        """Replace what is given; None when the owner has no such endpoint."""
        params = {
            "id": endpoint_id,
            "owner": owner,
            "name": name,
            "url": url,
            "event_types": event_types,
        }
        row = await self._one("update_endpoint", params)
        return StoredEndpoint.from_row(row) if row else None

    async def rotate_secret(
        self, owner: str, endpoint_id: str, signing_secret: str, *, keep_old_s: float | None
    ) -> StoredEndpoint | None:
        params = {
            "id": endpoint_id,
            "owner": owner,
            "signing_secret": signing_secret,
            "keep_old_s": keep_old_s,
        }
        row = await self._one("rotate_secret", params)
        return StoredEndpoint.from_row(row) if row else None

    async def delete_endpoint(self, owner: str, endpoint_id: str) -> bool:
        return await self._one("delete_endpoint", {"id": endpoint_id, "owner": owner}) is not None

    # --- deliveries ------------------------------------------------------------------

    async def insert_test_delivery(
        self, endpoint_id: str, event_id: str, event_type: str, payload: str
    ) -> str:
        """A delivery of a test event, with no job: the caller attempts it; its id."""
        params = {
            "id": ids.new_id("wh"),
            "endpoint_id": endpoint_id,
            "event_id": event_id,
            "event_type": event_type,
            "payload": payload,
        }
        row = await self._one("insert_test_delivery", params)
        assert row is not None
        return str(row["id"])

    async def delivery_to_send(self, delivery_id: str) -> DueDelivery | None:
        """The delivery if it is still pending (not delivered, given up on or deleted)."""
        row = await self._one("delivery_to_send", {"id": delivery_id})
        return DueDelivery.from_row(row) if row else None

    async def record_attempt(
        self, delivery_id: str, outcome: AttemptOutcome, conn: AsyncConnection | None = None
    ) -> int | None:
        """Record an attempt at a pending delivery (delivered, if it was); its number, or
        None when the delivery is no longer pending."""
        params = {
            "id": delivery_id,
            "status_code": outcome.status_code,
            "latency_ms": outcome.latency_ms,
            "error": outcome.error,
            "delivered": outcome.delivered,
        }
        row = await self._one("record_attempt", params, conn)
        return int(row["attempts"]) if row else None

    async def give_up(self, delivery_id: str, conn: AsyncConnection | None = None) -> None:
        await self._one("give_up_delivery", {"id": delivery_id}, conn)
