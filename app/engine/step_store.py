"""What the loop needs of the store: its response row and its steps, nothing else.

`ResponseStore` (Postgres) is the implementation; the unit tests drive the loop with an
in-memory one of the same shape, so the loop's branches are tested without a database.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from app.shapes import Item, JsonObject
from app.statuses import StepKind
from app.store.rows import Outcome, StepOutcome, StoredResponse, StoredStep


class StepStore(Protocol):
    async def get(self, response_id: str, owner: str) -> StoredResponse | None: ...

    async def mark_in_progress(self, response_id: str) -> StoredResponse | None:
        """The row, now `in_progress`; None when it has already ended."""
        ...

    async def finish(
        self,
        response_id: str,
        outcome: Outcome,
        *,
        forgets_content: bool = False,
        appends_to_conversation: bool = False,
        background: bool = False,
    ) -> StoredResponse | None:
        """Move a running response to a terminal state; None if it had already ended.
        `forgets_content`: it is a `store: false` response, forgotten as it ends.
        `appends_to_conversation`: it runs on a conversation, which gets its input and
        output as it ends `completed` or `incomplete`, in the same transaction.
        `background`: it was created so, and its ending may be announced by webhook."""
        ...

    async def conversation_items(self, conversation_id: str, before: int) -> list[Item]:
        """The conversation's items below position `before`, in order."""
        ...

    async def steps(self, response_id: str) -> list[StoredStep]: ...

    async def start_step(
        self, response_id: str, ordinal: int, kind: StepKind, request: JsonObject | None
    ) -> None: ...

    async def record_step_items(self, response_id: str, ordinal: int, items: list[Item]) -> None:
        """Items a running step has finished so far, so GET can show them already."""
        ...

    async def finish_step(self, response_id: str, ordinal: int, outcome: StepOutcome) -> None: ...


class RowNotWritten(Exception):
    """The run's response row was never written: nothing may be written about it."""


class WritesAfterRow:
    """The store of a run that starts while its response row is still being inserted: its
    writes wait for the insert to commit, its reads do not (they read other rows: the
    previous responses). If the insert fails, every write raises `RowNotWritten`, so the
    run stops having written nothing."""

    def __init__(self, store: StepStore, row: asyncio.Future[Any]) -> None:
        self._store = store
        self._row = row

    async def _row_written(self) -> None:
        try:
            # Shielded: one write cancelled while it waits must not cancel the insert.
            await asyncio.shield(self._row)
        except asyncio.CancelledError:
            if self._row.cancelled():
                raise RowNotWritten from None
            raise
        except Exception as exc:
            raise RowNotWritten from exc

    async def get(self, response_id: str, owner: str) -> StoredResponse | None:
        return await self._store.get(response_id, owner)

    async def mark_in_progress(self, response_id: str) -> StoredResponse | None:
        await self._row_written()
        return await self._store.mark_in_progress(response_id)

    async def finish(
        self,
        response_id: str,
        outcome: Outcome,
        *,
        forgets_content: bool = False,
        appends_to_conversation: bool = False,
        background: bool = False,
    ) -> StoredResponse | None:
        await self._row_written()
        return await self._store.finish(
            response_id,
            outcome,
            forgets_content=forgets_content,
            appends_to_conversation=appends_to_conversation,
            background=background,
        )

    async def conversation_items(self, conversation_id: str, before: int) -> list[Item]:
        return await self._store.conversation_items(conversation_id, before)

    async def steps(self, response_id: str) -> list[StoredStep]:
        return await self._store.steps(response_id)

    async def start_step(
        self, response_id: str, ordinal: int, kind: StepKind, request: JsonObject | None
    ) -> None:
        await self._row_written()
        await self._store.start_step(response_id, ordinal, kind, request)

    async def record_step_items(self, response_id: str, ordinal: int, items: list[Item]) -> None:
        await self._row_written()
        await self._store.record_step_items(response_id, ordinal, items)

    async def finish_step(self, response_id: str, ordinal: int, outcome: StepOutcome) -> None:
        await self._row_written()
        await self._store.finish_step(response_id, ordinal, outcome)
