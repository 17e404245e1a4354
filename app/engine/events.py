"""Numbering and delivery of Responses streaming events.

The engine emits events through an `Emitter`, which stamps consecutive sequence numbers and
hands them to a sink. The sink decides what delivery means: SSE frames to an open request,
nothing at all, or rows in the event log.
"""

from __future__ import annotations

from typing import Any, Protocol

TERMINAL_EVENT_BY_STATUS = {
    "completed": "response.completed",
    "failed": "response.failed",
    "incomplete": "response.incomplete",
    # Not in OpenAI's streaming events; Ferry ends a cancelled background stream with it
    # (named like OpenAI's `response.cancelled` webhook event).
    "cancelled": "response.cancelled",
}
TERMINAL_EVENT_TYPES = frozenset(TERMINAL_EVENT_BY_STATUS.values())
# Events after which a batching sink should flush: an item or the response changed state.
BOUNDARY_EVENT_TYPES = TERMINAL_EVENT_TYPES | {
    "response.created",
    "response.queued",
    "response.in_progress",
    "response.output_item.added",
    "response.output_item.done",
    "error",
}


class EventSink(Protocol):
    async def send(self, event: dict[str, Any]) -> None:
        """Deliver one numbered event."""
        ...

    async def flush(self) -> None:
        """Make everything sent so far durable/visible (a no-op for unbuffered sinks)."""
        ...


class Emitter:
    def __init__(self, sink: EventSink, next_sequence_number: int = 0) -> None:
        self.sink = sink
        self.next_sequence_number = next_sequence_number

    async def emit(self, event_type: str, **fields: Any) -> dict[str, Any]:
        event = {"type": event_type, "sequence_number": self.next_sequence_number, **fields}
        self.next_sequence_number += 1
        await self.sink.send(event)
        if event_type in BOUNDARY_EVENT_TYPES:
            await self.sink.flush()
        return event
