"""What the loop needs of the store: its response row and its steps, nothing else.

`ResponseStore` (Postgres) is the implementation; the unit tests drive the loop with an
in-memory one of the same shape, so the loop's branches are tested without a database.
"""

from __future__ import annotations

from typing import Protocol

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
