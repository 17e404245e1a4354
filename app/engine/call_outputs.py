"""Every `function_call_output` of a create must answer a call the conversation holds.

OpenAI refuses an output whose `call_id` names no `function_call` of the conversation (the
input, or the previous responses' inputs and outputs) with a 400, before anything runs; a
chat upstream would refuse the orphaned tool message anyway, later and less clearly.

The calls are looked for where they almost always are first — this input, the carried
conversation, the previous response — and the rest of the chain is read only when one is
not found there.
"""

from __future__ import annotations

from collections.abc import Iterable

from app.engine.continuation import ResponseReader, carried_items, stored_conversation
from app.engine.errors import RequestError
from app.shapes import Item
from app.store.rows import StoredResponse


def _call_ids(items: Iterable[Item]) -> set[str]:
    return {item["call_id"] for item in items if item.get("type") == "function_call"}


def _unanswerable(items: list[Item], calls: set[str]) -> tuple[int, str] | None:
    """The first output (its index and call id) that answers none of `calls`."""
    for index, item in enumerate(items):
        if item["type"] == "function_call_output" and item["call_id"] not in calls:
            return index, item["call_id"]
    return None


def _own_items(response: StoredResponse) -> list[Item]:
    request = response.request
    return [
        *(carried_items(request) or []),
        *(request.get("input") or []),
        *(response.output or []),
    ]


async def check_call_outputs(
    items: list[Item],
    carried: list[Item] | None,
    previous: StoredResponse | None,
    reader: ResponseReader,
) -> None:
    """A 400 naming `input[i].call_id` when an output of `items` answers no call of the
    conversation: `carried` (when the request carries it) or the `previous` response's
    chain, then `items` themselves."""
    if not any(item["type"] == "function_call_output" for item in items):
        return
    calls = _call_ids(items) | _call_ids(carried or [])
    if previous is not None:
        calls |= _call_ids(_own_items(previous))
    orphan = _unanswerable(items, calls)
    if orphan is not None and previous is not None and previous.previous_response_id:
        calls |= _call_ids(await stored_conversation(reader, previous))
        orphan = _unanswerable(items, calls)
    if orphan is not None:
        index, call_id = orphan
        raise RequestError(
            f"No tool call found for function call output with call_id {call_id}.",
            param=f"input[{index}].call_id",
            code="invalid_value",
        )
