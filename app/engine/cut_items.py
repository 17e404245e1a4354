"""Items a crash cut off in a streamed response's event log, to be closed as `incomplete`.

A resumed run redoes the interrupted step, which opens new items; before it does, every
item the log shows as added but never done is closed, so a client replaying the log never
sees an item left open. An `mcp_call` is the exception: its call is redone and the same
item is completed in place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app.engine.chat.logprobs import event_logprobs, part_logprobs
from app.engine.items import output_text_part, reasoning_text_part
from app.shapes import Event, Item, Part

_ARGUMENTS_DELTA = "response.function_call_arguments.delta"


@dataclass(frozen=True)
class _TextPart:
    """How the one text part of an item type streams: its delta and done events, its shape."""

    delta: str
    done: str
    part: Callable[[str, list[Event]], Part]  # from the text and the deltas' logprobs
    done_fields: Callable[[Part], Event]  # what its done event carries besides the text


_TEXT_PARTS = {
    "message": _TextPart(
        "response.output_text.delta",
        "response.output_text.done",
        lambda text, logprobs: output_text_part(text, part_logprobs(logprobs)),
        lambda part: {"logprobs": event_logprobs(part.get("logprobs") or [])},
    ),
    "reasoning": _TextPart(
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        lambda text, _: reasoning_text_part(text),
        lambda _: {},
    ),
}
_TEXT_DELTAS = frozenset(kind.delta for kind in _TEXT_PARTS.values())


@dataclass
class _Cut:
    index: int
    item: Item  # as it is closed
    part_open: bool  # its text part was added and never done


def _cut_off(events: list[Event]) -> list[_Cut]:
    opened: dict[str, tuple[int, Item]] = {}
    text: dict[str, list[str]] = {}
    logprobs: dict[str, list[Event]] = {}
    arguments: dict[str, list[str]] = {}
    parts_open: set[str] = set()
    for event in events:
        kind = event["type"]
        if kind == "response.output_item.added":
            opened[event["item"]["id"]] = (event["output_index"], event["item"])
        elif kind == "response.output_item.done":
            opened.pop(event["item"]["id"], None)
        elif kind == "response.content_part.added":
            parts_open.add(event["item_id"])
        elif kind == "response.content_part.done":
            parts_open.discard(event["item_id"])
        elif kind in _TEXT_DELTAS:
            text.setdefault(event["item_id"], []).append(event["delta"])
            logprobs.setdefault(event["item_id"], []).extend(event.get("logprobs") or [])
        elif kind == _ARGUMENTS_DELTA:
            arguments.setdefault(event["item_id"], []).append(event["delta"])
    cuts = []
    for item_id, (index, item) in opened.items():
        if item["type"] == "mcp_call":
            continue
        done = {**item, "status": "incomplete"}
        if item["type"] in _TEXT_PARTS:
            part = _TEXT_PARTS[item["type"]].part
            done["content"] = [part("".join(text.get(item_id, [])), logprobs.get(item_id, []))]
        elif item["type"] == "function_call":
            done["arguments"] = "".join(arguments.get(item_id, []))
        cuts.append(_Cut(index, done, item_id in parts_open))
    return cuts


def cut_off_items(events: list[Event]) -> list[tuple[int, Item]]:
    """(output index, item closed `incomplete`) for each item the log left open, in order."""
    return [(cut.index, cut.item) for cut in _cut_off(events)]


def closing_events(logged: list[Event]) -> list[Event]:
    """The events that close what `logged` left open, numbered on from its last event: what
    a resumed run appends before it starts its own. A text part left open (of a message or
    of a reasoning item) is closed first, with the text it had, as a live stream closes it."""
    unnumbered = [
        event
        for cut in _cut_off(logged)
        for event in item_closing_events(cut.index, cut.item, part_open=cut.part_open)
    ]
    number = logged[-1]["sequence_number"] + 1 if logged else 0
    return [
        {"type": event["type"], "sequence_number": number + offset, **event}
        for offset, event in enumerate(unnumbered)
    ]


def item_closing_events(index: int, item: Item, *, part_open: bool) -> list[Event]:
    """The events, not numbered yet, that close `item` (as it ends) at output `index`: its
    text part first when it was left open, then the item."""
    events: list[Event] = []
    text_part = _TEXT_PARTS.get(item["type"])
    if part_open and text_part is not None:
        [part] = item.get("content") or [text_part.part("", [])]
        at = {"item_id": item["id"], "output_index": index, "content_index": 0}
        done_fields = text_part.done_fields(part)
        events.append({"type": text_part.done, **at, "text": part["text"], **done_fields})
        events.append({"type": "response.content_part.done", **at, "part": part})
    events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    return events
