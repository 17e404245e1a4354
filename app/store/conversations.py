"""Reads and writes of conversations and their items.

Items keep a position, handed out in order under the conversation's row lock. An item added
directly is stored on its row; one a response appended is read from that response's row
(see migration 0010), so every item is stored once.

`append_ended_response` is what ending a response adds to its transaction; the rest serves
requests, each one query or one transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from app.shapes import Item, JsonObject
from app.statuses import ResponseStatus
from app.store.queries import fetch_one, fetch_rows, load_queries
from app.store.rows import StoredResponse

CONVERSATION_QUERIES = load_queries(Path(__file__).with_name("conversations.sql"))

# Past every position (an `integer` column): where a page read newest first starts.
_NO_POSITION_AFTER = 2**31 - 1

#: The endings that add a response's input and output to its conversation. A failed or
#: cancelled response adds nothing, as at OpenAI.
APPENDING_STATUSES = frozenset({ResponseStatus.COMPLETED, ResponseStatus.INCOMPLETE})


@dataclass(frozen=True)
class StoredConversation:
    id: str
    owner: str
    metadata: dict[str, str]
    next_position: int  # the position the next item takes
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: DictRow) -> StoredConversation:
        return cls(**row)


@dataclass(frozen=True)
class StoredItem:
    position: int
    item_id: str
    item: Item


async def _run(conn: AsyncConnection, name: str, params: Mapping[str, Any]) -> list[DictRow]:
    return await fetch_rows(conn, CONVERSATION_QUERIES[name], params)


async def _one(conn: AsyncConnection, name: str, params: Mapping[str, Any]) -> DictRow | None:
    return await fetch_one(conn, CONVERSATION_QUERIES[name], params)


def _items(rows: list[DictRow]) -> list[StoredItem]:
    # An item whose response row is gone unresolved (it cannot be: deleting one moves its
    # items here first) is left out rather than shown as null.
    return [
        StoredItem(row["position"], row["item_id"], row["item"])
        for row in rows
        if row["item"] is not None
    ]


async def append_ended_response(conn: AsyncConnection, ended: StoredResponse) -> None:
    """Append a response's input and output to its conversation, in the transaction that
    ended it (`conn`), if it has one and ended `completed` or `incomplete`.

    A response ends once (`finish_response` moves only a running row), so its items are
    appended once, whatever crashed or was retried before. A conversation deleted meanwhile
    gets nothing.
    """
    if ended.conversation_id is None or ended.status not in APPENDING_STATUSES:
        return
    locked = await _one(conn, "lock_conversation_any_owner", {"id": ended.conversation_id})
    if locked is None:
        return
    params = {
        "conversation_id": ended.conversation_id,
        "response_id": ended.id,
        "first": locked["next_position"],
        # Its content is forgotten in this same transaction: the conversation keeps a copy.
        "held": not ended.is_kept,
    }
    await _run(conn, "append_response_items", params)


async def context_items(conn: AsyncConnection, conversation_id: str, before: int) -> list[Item]:
    """The conversation's items below position `before`, in order: a response's context."""
    rows = await _run(conn, "context_items", {"id": conversation_id, "before": before})
    return [row["item"] for row in rows if row["item"] is not None]


class ConversationStore:
    """The conversation queries a request makes, on the pool's connections."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A connection inside one transaction, for the methods that take `conn`."""
        async with self.pool.connection() as conn, conn.transaction():
            yield conn

    async def create(
        self, conversation_id: str, owner: str, metadata: dict[str, str], items: list[Item]
    ) -> StoredConversation:
        """A new conversation holding `items`, in one transaction."""
        async with self.transaction() as conn:
            params = {"id": conversation_id, "owner": owner, "metadata": Jsonb(metadata)}
            row = await _one(conn, "insert_conversation", params)
            assert row is not None
            created = StoredConversation.from_row(row)
            if items:
                await self.add_items(conn, created, items)
        return created

    async def get(self, conversation_id: str, owner: str) -> StoredConversation | None:
        async with self.pool.connection() as conn:
            row = await _one(conn, "get_conversation", {"id": conversation_id, "owner": owner})
        return StoredConversation.from_row(row) if row else None

    async def locked(
        self, conn: AsyncConnection, conversation_id: str, owner: str
    ) -> StoredConversation | None:
        """The conversation, locked until the end of the caller's transaction."""
        row = await _one(conn, "lock_conversation", {"id": conversation_id, "owner": owner})
        return StoredConversation.from_row(row) if row else None

    async def update_metadata(
        self, conversation_id: str, owner: str, metadata: dict[str, str]
    ) -> StoredConversation | None:
        params = {"id": conversation_id, "owner": owner, "metadata": Jsonb(metadata)}
        async with self.pool.connection() as conn:
            row = await _one(conn, "update_metadata", params)
        return StoredConversation.from_row(row) if row else None

    async def delete(self, conversation_id: str, owner: str) -> bool:
        async with self.pool.connection() as conn:
            params = {"id": conversation_id, "owner": owner}
            return await _one(conn, "delete_conversation", params) is not None

    async def running_response(
        self, conn: AsyncConnection, conversation_id: str
    ) -> tuple[str, ResponseStatus] | None:
        """(id, status) of the response queued or running on the conversation, if any."""
        row = await _one(conn, "running_response", {"id": conversation_id})
        return (row["id"], ResponseStatus(row["status"])) if row else None

    async def taken_item_ids(
        self, conn: AsyncConnection, conversation_id: str, item_ids: Sequence[str]
    ) -> set[str]:
        """Which of `item_ids` the conversation already holds."""
        params = {"id": conversation_id, "item_ids": list(item_ids)}
        return {row["item_id"] for row in await _run(conn, "taken_item_ids", params)}

    async def add_items(
        self, conn: AsyncConnection, conversation: StoredConversation, items: list[Item]
    ) -> list[StoredItem]:
        """Append `items` after the conversation's, in the caller's transaction, which holds
        its lock (`locked`); the items with their positions."""
        first = conversation.next_position
        params = {"id": conversation.id, "first": first, "items": Jsonb(items)}
        await _run(conn, "add_items", params)
        return [StoredItem(first + offset, item["id"], item) for offset, item in enumerate(items)]

    async def list_items(
        self, conversation_id: str, *, descending: bool, after: int | None, limit: int
    ) -> list[StoredItem]:
        """Up to `limit` items after position `after` (from the start without), in the
        order asked for: newest first when `descending`."""
        params: JsonObject = {"id": conversation_id, "limit": limit}
        if descending:
            name = "list_items_desc"
            params["before"] = _NO_POSITION_AFTER if after is None else after
        else:
            name = "list_items_asc"
            params["after"] = -1 if after is None else after
        async with self.pool.connection() as conn:
            return _items(await _run(conn, name, params))

    async def get_item(self, conversation_id: str, item_id: str) -> StoredItem | None:
        async with self.pool.connection() as conn:
            rows = await _run(conn, "get_item", {"id": conversation_id, "item_id": item_id})
        found = _items(rows)
        return found[0] if found else None

    async def delete_item(self, conn: AsyncConnection, conversation_id: str, item_id: str) -> bool:
        params = {"id": conversation_id, "item_id": item_id}
        return await _one(conn, "delete_item", params) is not None
