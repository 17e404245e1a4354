"""A finished response told again as the event sequence a live stream would have sent.

Flex streams use it: the work ran in a worker with no one listening, and the client gets
the same events, in the same order, once the response is done. Text (and reasoning text)
arrives as one delta.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

from app.engine.chat.logprobs import event_logprobs
from app.engine.events import stream_error
from app.engine.resource import ResponseObject
from app.shapes import Event, Item
from app.statuses import ResponseStatus


def replay_events(response: ResponseObject) -> list[Event]:
    """Every event for `response` (a Response object in a terminal state), numbered from 0."""
    events = list(_unnumbered(response))
    for number, event in enumerate(events):
        event["sequence_number"] = number
    return events


def _unnumbered(response: ResponseObject) -> Iterator[Event]:
    opening = {
        **copy.deepcopy(response),
        "status": "in_progress",
        "output": [],
        "usage": None,
        "error": None,
        "incomplete_details": None,
        "completed_at": None,
    }
    yield {"type": "response.created", "response": opening}
    yield {"type": "response.in_progress", "response": opening}
    for index, item in enumerate(response["output"]):
        yield from _item_events(index, item)
    status = ResponseStatus(response["status"])
    if status == ResponseStatus.FAILED and response.get("error"):
        error = response["error"]
        yield {"type": "error", "error": stream_error(error.get("code"), error.get("message"))}
    yield {"type": status.terminal_event_type, "response": response}


def _item_events(index: int, item: Item) -> Iterator[Event]:
    if item["type"] == "message":
        yield from _message_events(index, item)
    elif item["type"] == "reasoning":
        yield from _reasoning_events(index, item)
    elif item["type"] == "function_call":
        yield from _function_call_events(index, item)
    else:  # items without streamed content are simply added and done
        yield {"type": "response.output_item.added", "output_index": index, "item": item}
        yield {"type": "response.output_item.done", "output_index": index, "item": item}


def _message_events(index: int, item: Item) -> Iterator[Event]:
    item_id = item["id"]
    yield {
        "type": "response.output_item.added",
        "output_index": index,
        "item": {**item, "status": "in_progress", "content": []},
    }
    for part_index, part in enumerate(item["content"]):
        at = {"item_id": item_id, "output_index": index, "content_index": part_index}
        if part["type"] != "output_text":
            yield {"type": "response.content_part.added", **at, "part": part}
            yield {"type": "response.content_part.done", **at, "part": part}
            continue
        empty = {**part, "text": "", "logprobs": []}
        yield {"type": "response.content_part.added", **at, "part": empty}
        logprobs = event_logprobs(part.get("logprobs") or [])
        if part["text"]:
            yield {
                "type": "response.output_text.delta",
                **at,
                "delta": part["text"],
                "logprobs": logprobs,
            }
        yield {
            "type": "response.output_text.done",
            **at,
            "text": part["text"],
            "logprobs": logprobs,
        }
        yield {"type": "response.content_part.done", **at, "part": part}
    yield {"type": "response.output_item.done", "output_index": index, "item": item}


def _reasoning_events(index: int, item: Item) -> Iterator[Event]:
    item_id = item["id"]
    yield {
        "type": "response.output_item.added",
        "output_index": index,
        "item": {**item, "status": "in_progress", "content": []},
    }
    for part_index, part in enumerate(item.get("content") or []):
        at = {"item_id": item_id, "output_index": index, "content_index": part_index}
        yield {"type": "response.content_part.added", **at, "part": {**part, "text": ""}}
        if part["text"]:
            yield {"type": "response.reasoning_text.delta", **at, "delta": part["text"]}
        yield {"type": "response.reasoning_text.done", **at, "text": part["text"]}
        yield {"type": "response.content_part.done", **at, "part": part}
    yield {"type": "response.output_item.done", "output_index": index, "item": item}


def _function_call_events(index: int, item: Item) -> Iterator[Event]:
    at = {"item_id": item["id"], "output_index": index}
    yield {
        "type": "response.output_item.added",
        "output_index": index,
        "item": {**item, "status": "in_progress", "arguments": ""},
    }
    if item["arguments"]:
        yield {"type": "response.function_call_arguments.delta", **at, "delta": item["arguments"]}
    yield {
        "type": "response.function_call_arguments.done",
        **at,
        "name": item["name"],
        "arguments": item["arguments"],
    }
    yield {"type": "response.output_item.done", "output_index": index, "item": item}
