"""The worker's event sink: batches events into the persisted log that streams tail.

Writes are batched — not one transaction per token — and flushed at every item boundary
(the emitter calls `flush`) and at the latest `flush_interval_s` after an event arrives.
"""

from __future__ import annotations

import asyncio
from typing import Any

from app.store.responses import ResponseStore


class EventLogSink:
    def __init__(self, store: ResponseStore, response_id: str, flush_interval_s: float) -> None:
        self.store = store
        self.response_id = response_id
        self.flush_interval_s = flush_interval_s
        self._pending: list[dict[str, Any]] = []
        self._timer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        # Set when the log refused a batch: the response was ended elsewhere (a cancel).
        self.closed_elsewhere = False

    async def send(self, event: dict[str, Any]) -> None:
        self._pending.append(event)
        if self._timer is None:
            self._timer = asyncio.create_task(self._flush_soon(), name="event log flush")

    async def flush(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        await self._write_pending()

    async def aclose(self) -> None:
        """Write what is left and stop the timer."""
        await self.flush()

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.flush_interval_s)
        self._timer = None  # from here on this is a plain flush; `flush()` must not cancel it
        await self._write_pending()

    async def _write_pending(self) -> None:
        async with self._lock:
            batch, self._pending = self._pending, []
            if batch and not await self.store.append_events(self.response_id, batch):
                self.closed_elsewhere = True
