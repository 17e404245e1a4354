"""Following a response's persisted event log: replay from a point, then live, to its end.

Works in any API process: events come from the database, and the process's notifier only
says when to look again. Every read starts after the last sequence number delivered, so
nothing is repeated and a missed notification costs at most one re-check interval.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from app.engine.waiting import wait_or_stop
from app.shapes import Event
from app.statuses import TERMINAL_EVENT_TYPES
from app.store.notify import EventNotifier
from app.store.responses import ResponseStore

# How long after a response's row has ended its tailers wait for its terminal event.
TERMINAL_EVENT_WAIT = timedelta(seconds=10)


async def tail_events(
    store: ResponseStore,
    notifier: EventNotifier,
    response_id: str,
    *,
    after: int,
    idle_s: float,
    stop: asyncio.Event,
) -> AsyncIterator[list[Event] | None]:
    """Yield logged events after `after`, as read (in batches: a caller writes each as one),
    until the terminal one; None after each idle spell.

    A None is the caller's cue for a keep-alive. The tail also ends when the response is
    gone or has ended with nothing more in its log, and when `stop` is set (the process
    is shutting down: the client resumes elsewhere with `starting_after`).
    """
    last = after
    with notifier.subscribe(response_id) as woken:
        while True:
            woken.clear()  # cleared before reading: a notification during the read is kept
            events = await store.events_after(response_id, last)
            for n, event in enumerate(events):
                if event["type"] in TERMINAL_EVENT_TYPES:
                    yield events[: n + 1]
                    return
            if events:
                yield events
                last = events[-1]["sequence_number"]
            was_woken, _ = await wait_or_stop(woken.wait(), stop, idle_s)
            if stop.is_set():
                return
            if was_woken:
                continue
            if not await _may_still_grow(store, response_id, last):
                return
            yield None


async def _may_still_grow(store: ResponseStore, response_id: str, last: int) -> bool:
    stored = await store.get_any_owner(response_id)
    if stored is None:
        return False  # deleted
    if not stored.is_terminal:
        return True
    if await store.events_after(response_id, last):
        return True
    # A run commits its ending, then logs its terminal event (`ResponseLoop._finish`): a
    # look in between waits for the event, for a while (a process that died between the
    # two never logs it). Seen on a loaded machine: a stream cut before its last event.
    ended = stored.completed_at
    return ended is not None and datetime.now(UTC) - ended < TERMINAL_EVENT_WAIT
