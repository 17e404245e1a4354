"""Event sinks for the inline drivers: discard (blocking) and an in-memory queue (live SSE)."""

from __future__ import annotations

import asyncio
from typing import Any


class DiscardSink:
    """Blocking requests return only the final object; the events go nowhere."""

    async def send(self, event: dict[str, Any]) -> None:
        return None

    async def flush(self) -> None:
        return None


class QueueSink:
    """Hands events to the HTTP response writing them as SSE frames."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def send(self, event: dict[str, Any]) -> None:
        self.queue.put_nowait(event)

    async def flush(self) -> None:
        return None

    def close(self) -> None:
        """No more events: the reader stops after what is queued."""
        self.queue.put_nowait(None)
