"""What a running model turn has finished so far, written for GET to show mid-turn.

Only for showing: a turn cut off mid-way is redone whole, so nothing resumes from these
writes. They are therefore held back: at most one write per interval, with the latest
items, and none at all when the turn ends first (its end writes the items anyway). A quick
turn, most of them, costs no write here.
"""

from __future__ import annotations

import asyncio
import logging

from app.engine.step_store import StepStore
from app.shapes import Item

log = logging.getLogger(__name__)


class StepProgress:
    def __init__(self, store: StepStore, response_id: str, ordinal: int, interval_s: float):
        self.store = store
        self.response_id = response_id
        self.ordinal = ordinal
        self.interval_s = interval_s
        self._latest: list[Item] = []
        self._writer: asyncio.Task[None] | None = None

    async def items_done(self, items: list[Item]) -> None:
        """The turn's finished items, all of them so far; written within the interval."""
        self._latest = items
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_soon(), name="step progress")

    async def _write_soon(self) -> None:
        await asyncio.sleep(self.interval_s)
        try:
            await self.store.record_step_items(self.response_id, self.ordinal, self._latest)
        except Exception:
            # Only GET's view mid-turn is behind; the turn's end writes the items anyway.
            log.warning("could not record the items of a running turn", exc_info=True)

    async def stop(self) -> None:
        """The turn has ended: a write not made yet is not needed any more."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            # wait() rather than await: the writer's cancellation is not ours to raise.
            await asyncio.wait([writer])
