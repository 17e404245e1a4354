"""A recording event sink, and what every stream of events must satisfy."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from app.shapes import Event
from app.statuses import TERMINAL_EVENT_TYPES

#: Bound on every wait for something the code under test is expected to do.
WAIT_S = 5.0


class RecordingSink:
    """An `EventSink` that keeps every event in order, as serialised when it was sent (so a
    later change to a dict the engine still holds cannot rewrite history), and the number of
    events sent at each flush."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.flushes: list[int] = []
        self._new = asyncio.Event()

    async def send(self, event: Event) -> None:
        self.events.append(json.loads(json.dumps(event)))
        self._new.set()

    async def flush(self) -> None:
        self.flushes.append(len(self.events))

    @property
    def types(self) -> list[str]:
        return [event["type"] for event in self.events]

    def of_type(self, event_type: str) -> list[Event]:
        return [event for event in self.events if event["type"] == event_type]

    async def wait_for(self, event_type: str, count: int = 1, *, within_s: float = WAIT_S) -> Event:
        """The `count`-th event of `event_type`, once it has been sent."""
        async with asyncio.timeout(within_s):
            while len(self.of_type(event_type)) < count:
                self._new.clear()
                await self._new.wait()
        return self.of_type(event_type)[count - 1]


def sequence_numbers(events: list[Event]) -> list[int]:
    return [event["sequence_number"] for event in events]


def assert_numbered_from(events: list[Event], first: int) -> None:
    assert sequence_numbers(events) == list(range(first, first + len(events)))


def done_items(events: list[Event]) -> list[dict[str, Any]]:
    return [e["item"] for e in events if e["type"] == "response.output_item.done"]


def text_deltas(events: list[Event], item_id: str | None = None) -> str:
    return "".join(
        e["delta"]
        for e in events
        if e["type"] == "response.output_text.delta" and item_id in (None, e["item_id"])
    )


# Items a tool step produces: several may be announced together and run at once.
TOOL_STEP_ITEMS = frozenset({"function_call_output", "mcp_call"})


def assert_well_formed(events: list[Event], *, ended: bool = True) -> None:
    """What a client may rely on in any one stream.

    Numbers are consecutive. The items the model streams (messages, calls) come one at a
    time, each closed before the next starts; the outputs of one turn's tool calls may run
    together, and an `mcp_call` stays open while its call runs. Every item is closed before
    the terminal event, which comes last and once; a failure's comes after an `error` event.
    """
    assert_numbered_from(events, events[0]["sequence_number"])
    open_items: dict[str, str] = {}
    for event in events:
        kind = event["type"]
        if kind == "response.output_item.added":
            item = event["item"]
            blocking = [
                i
                for i, t in open_items.items()
                if t != "mcp_call"
                and (t not in TOOL_STEP_ITEMS or item["type"] not in TOOL_STEP_ITEMS)
            ]
            assert not blocking, f"item {item['id']} added while {blocking} open"
            open_items[item["id"]] = item["type"]
        elif kind == "response.output_item.done":
            assert event["item"]["id"] in open_items, f"{event['item']['id']} done, never added"
            del open_items[event["item"]["id"]]
        elif kind in TERMINAL_EVENT_TYPES:
            assert not open_items, f"{kind} while items {list(open_items)} are still open"
    terminal = [e for e in events if e["type"] in TERMINAL_EVENT_TYPES]
    if ended:
        assert len(terminal) == 1 and events[-1] is terminal[0], [e["type"] for e in events]
        if events[-1]["type"] == "response.failed":
            assert events[-2]["type"] == "error"
    else:
        assert not terminal
