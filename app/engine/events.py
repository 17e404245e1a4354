"""Responses streaming events: their numbering, and the sinks that deliver them.

The engine emits events through an `Emitter`, which stamps consecutive sequence numbers and
hands them to a sink. The sink decides what delivery means, one per driver of the loop:

- `StreamSink`: the inline stream, and a WebSocket turn; the front end writes the events
  as SSE frames, or as the socket's messages.
- `DiscardSink`: the inline blocking request; only the final object is returned.
- `EventLogSink`: the worker; events are batched into the persisted log that streams tail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any, Protocol, TypedDict

from app.engine.sealing import ItemView, as_stored
from app.shapes import Event, Item
from app.statuses import TERMINAL_EVENT_TYPES

log = logging.getLogger(__name__)

# Events after which a batching sink should flush: an item or the response changed state.
BOUNDARY_EVENT_TYPES = TERMINAL_EVENT_TYPES | {
    "response.created",
    "response.queued",
    "response.in_progress",
    "response.output_item.added",
    "response.output_item.done",
    "error",
}


# The events a background stream's log starts with, written with its row when it is
# accepted: whatever runs it first numbers its own events after them.
OPENING_EVENT_TYPES = ("response.created", "response.queued")


class StreamError(TypedDict):
    """The `error` of an `error` event."""

    type: str
    code: str | None
    message: str
    param: str | None


def stream_error(code: str | None, message: str) -> StreamError:
    """The payload of an `error` event: a server-side failure, never the client's fault."""
    return {"type": "server_error", "code": code, "message": message, "param": None}


def error_event(sequence_number: int, code: str | None, message: str) -> Event:
    return {
        "type": "error",
        "sequence_number": sequence_number,
        "error": stream_error(code, message),
    }


class EventSink(Protocol):
    async def send(self, event: Event) -> None:
        """Deliver one numbered event."""
        ...

    async def flush(self) -> None:
        """Make everything sent so far durable/visible (a no-op for unbuffered sinks)."""
        ...


class Emitter:
    """Numbers events and hands them to a sink; remembers which items it left open, so a
    run that ends abruptly can close them before its terminal event.

    Finished items leave through `view`: the item of every `response.output_item.done`
    and the output of every Response object an event carries. That is the one place a
    response's items are shown as its request asked (with sealed reasoning, say), whichever
    code emitted them.
    """

    def __init__(
        self,
        sink: EventSink,
        next_sequence_number: int = 0,
        announced: Mapping[str, int] | None = None,
    ) -> None:
        """`announced`: the items a stream this one continues already announced, by id, with
        their output indexes (see `announced_items`)."""
        self.sink = sink
        self.next_sequence_number = next_sequence_number
        # item id -> output index, for every item the stream has announced. A new item takes
        # the next index after all of them, never one a cut-off item had: a client that
        # followed the stream across a resume must never see an index twice.
        self.announced: dict[str, int] = dict(announced or {})
        self.next_output_index = max(self.announced.values(), default=-1) + 1
        self.view: ItemView = as_stored  # how finished items are shown (see above)
        # item id -> (output index, the item as announced), for items added but not done
        self.open_items: dict[str, tuple[int, Item]] = {}
        self.open_parts: set[str] = set()  # ids of items with a content part added, not done

    async def emit(self, event_type: str, **fields: Any) -> Event:
        if event_type == "response.output_item.done":
            fields["item"] = self.view(fields["item"])
        if isinstance(fields.get("response"), dict):
            response = fields["response"]
            fields["response"] = {**response, "output": [self.view(i) for i in response["output"]]}
        event = {"type": event_type, "sequence_number": self.next_sequence_number, **fields}
        self.next_sequence_number += 1
        if event_type == "response.output_item.added":
            index = fields["output_index"]
            self.announced[fields["item"]["id"]] = index
            self.next_output_index = max(self.next_output_index, index + 1)
            self.open_items[fields["item"]["id"]] = (index, fields["item"])
        elif event_type == "response.output_item.done":
            self.open_items.pop(fields["item"]["id"], None)
        elif event_type == "response.content_part.added":
            self.open_parts.add(fields["item_id"])
        elif event_type == "response.content_part.done":
            self.open_parts.discard(fields["item_id"])
        await self.sink.send(event)
        if event_type in BOUNDARY_EVENT_TYPES:
            await self.sink.flush()
        return event


class DiscardSink:
    """Blocking requests return only the final object; the events go nowhere."""

    async def send(self, event: Event) -> None:
        return None

    async def flush(self) -> None:
        return None


class StreamSink:
    """Hands events to the writer of an HTTP response (SSE frames) or a WebSocket, in
    batches.

    The writer takes whatever has arrived since it last looked, so a burst of tokens goes
    out as one write rather than one per event, and waiting costs no task per event. The
    first token is the exception: it is handed over at once.
    """

    def __init__(self) -> None:
        self._pending: list[Event] = []
        self._ready = asyncio.Event()
        self.closed = False
        self._first_token_sent = False

    async def send(self, event: Event) -> None:
        self._pending.append(event)
        self._ready.set()
        if not self._first_token_sent and event["type"].endswith(".delta"):
            # Let the writer run now: otherwise the first token waits, with the rest of the
            # upstream's block, for the loop's next pause (≈ 1 ms on a fast upstream, in a
            # timeline of 300 streams), and the time to first token is what a user notices.
            self._first_token_sent = True
            await asyncio.sleep(0)

    async def flush(self) -> None:
        return None

    def close(self) -> None:
        """No more events: the writer stops after what is pending."""
        self.closed = True
        self._ready.set()

    def wake(self) -> None:
        """End the writer's current wait early (it has something else to check)."""
        self._ready.set()

    async def take(self, timeout_s: float) -> list[Event]:
        """The events that arrived since the last take, waiting up to `timeout_s` for one.

        Empty when the wait timed out, was woken, or the sink is closed and drained.
        """
        if not self._pending and not self.closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._ready.wait()
        self._ready.clear()
        batch, self._pending = self._pending, []
        return batch


# How often a worker relaying a fast stream lets its other tasks run. A pause costs a few
# microseconds; without one, a 64 kB block of the upstream's stream (hundreds of tokens) holds
# the worker's event loop for tens of milliseconds, and every query of a response being
# picked up waits that long. Measured with three streams relaying (bench, pickup under load):
# every 32 events, pickup took ≈ 40 ms; every 8, ≈ 18 ms; every 2, ≈ 14 ms but a fifth less
# relayed.
YIELD_EVERY_EVENTS = 8


class EventLog(Protocol):
    """Where an `EventLogSink` writes: the response's persisted log (`ResponseStore`)."""

    async def append_events(self, response_id: str, events: list[Event]) -> bool: ...


class EventLogSink:
    """Batches events into the persisted log that background streams tail.

    Writes are batched, not one transaction per token, by a writer behind the loop (the
    loop goes on reading the upstream while a batch commits). The first event after a quiet
    spell is written at once; what arrives while that write is in flight waits for the next
    one, which starts when `max_events` have gathered or `flush_interval_s` after the last
    one started, whichever is first. A tailer so sees the first tokens of a turn one commit
    after they were made, a fast stream goes out in batches of `max_events` that the tailer
    relays while the next is written, and a slow one makes at most one row per interval.
    The emitter's `flush` at every item boundary writes at once and waits for it. Every
    `YIELD_EVERY_EVENTS` events `send` pauses once, so that the writer and the worker's other
    work get their turn. A batch the log refuses (the response was ended elsewhere, by a
    cancel) is dropped.
    """

    def __init__(
        self, event_log: EventLog, response_id: str, flush_interval_s: float, max_events: int
    ) -> None:
        self.event_log = event_log
        self.response_id = response_id
        self.flush_interval_s = flush_interval_s
        self.max_events = max_events
        self._pending: list[Event] = []
        self._behind: asyncio.Task[None] | None = None
        self._full = asyncio.Event()  # a batch of `max_events` is waiting
        self._lock = asyncio.Lock()  # one write at a time, in sequence order

    async def send(self, event: Event) -> None:
        self._pending.append(event)
        count = len(self._pending)
        if self._behind is None:
            self._behind = asyncio.create_task(self._write_behind(), name="event log write")
        elif count % self.max_events == 0 or count % YIELD_EVERY_EVENTS == 0:
            if count >= self.max_events:
                self._full.set()
            # A fast upstream is read in blocks of hundreds of chunks without a pause: let
            # the writer start (or its write in flight finish), and the worker's other
            # work (other responses, picking up new ones) go on, now, not after the block.
            await asyncio.sleep(0)

    async def flush(self) -> None:
        await self._write_pending()

    async def aclose(self) -> None:
        """Write what is left; the writer behind stops, whether that write went through or
        not (a run that could not write leaves its log to the next attempt, which must
        not meet a writer of this one's)."""
        try:
            await self.flush()
        finally:
            behind, self._behind = self._behind, None
            if behind is not None:
                behind.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await behind

    async def _write_behind(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                started = loop.time()
                self._full.clear()
                try:
                    await self._write_pending()
                except Exception:
                    # The events stay pending: the next write takes them, in order.
                    log.warning("could not write to the event log; retrying", exc_info=True)
                if len(self._pending) < self.max_events:
                    pause_s = started + self.flush_interval_s - loop.time()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(pause_s):
                            await self._full.wait()
        finally:
            if self._behind is asyncio.current_task():
                self._behind = None

    async def _write_pending(self) -> None:
        async with self._lock:
            batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                await self.event_log.append_events(self.response_id, batch)
            except BaseException:
                self._pending[:0] = batch  # the log must not skip a sequence number
                raise


def announced_items(events: list[Event]) -> dict[str, int]:
    """Item id -> output index, for every item `events` announced."""
    return {
        event["item"]["id"]: event["output_index"]
        for event in events
        if event["type"] == "response.output_item.added"
    }
