"""Items a crash cut off in a streamed response's event log, to be closed as `incomplete`.

A resumed run redoes the interrupted step, which opens new items; before it does, every
item the log shows as added but never done is closed, so a client replaying the log never
sees an item left open. An `mcp_call` is the exception: its call is redone and the same
item is completed in place.
"""

from __future__ import annotations

from app.engine.chat.logprobs import part_logprobs
from app.engine.items import output_text_part
from app.shapes import Event, Item

_TEXT_DELTA = "response.output_text.delta"
_ARGUMENTS_DELTA = "response.function_call_arguments.delta"


def cut_off_items(events: list[Event]) -> list[tuple[int, Item]]:
    """(output index, item closed `incomplete`) for each item the log left open, in order."""
    opened: dict[str, tuple[int, Item]] = {}
    text: dict[str, list[str]] = {}
    logprobs: dict[str, list[Event]] = {}
    arguments: dict[str, list[str]] = {}
    for event in events:
        kind = event["type"]
        if kind == "response.output_item.added":
            opened[event["item"]["id"]] = (event["output_index"], event["item"])
        elif kind == "response.output_item.done":
            opened.pop(event["item"]["id"], None)
        elif kind == _TEXT_DELTA:
            text.setdefault(event["item_id"], []).append(event["delta"])
            logprobs.setdefault(event["item_id"], []).extend(event.get("logprobs") or [])
        elif kind == _ARGUMENTS_DELTA:
            arguments.setdefault(event["item_id"], []).append(event["delta"])
    closed = []
    for item_id, (index, item) in opened.items():
        if item["type"] == "mcp_call":
            continue
        done = {**item, "status": "incomplete"}
        if item["type"] == "message":
            tokens = part_logprobs(logprobs.get(item_id, []))
            done["content"] = [output_text_part("".join(text.get(item_id, [])), tokens)]
        elif item["type"] == "function_call":
            done["arguments"] = "".join(arguments.get(item_id, []))
        closed.append((index, done))
    return closed


def closing_events(logged: list[Event]) -> list[Event]:
    """The events that close what `logged` left open, numbered on from its last event: what
    a resumed run appends before it starts its own."""
    number = logged[-1]["sequence_number"] + 1 if logged else 0
    return [
        {
            "type": "response.output_item.done",
            "sequence_number": number + offset,
            "output_index": index,
            "item": item,
        }
        for offset, (index, item) in enumerate(cut_off_items(logged))
    ]
