"""The items of a response's input and output, and the small shapes that travel with them.

Items are JSON objects as the API shows them (a `message`, a `function_call`, ...); they are
stored, streamed and echoed as they are, so they stay plain dicts. Each shape that several
places build has one constructor here, so no two copies can drift apart.
"""

from __future__ import annotations

from app import ids
from app.shapes import Item, JsonObject, Part

#: Item types that are tool calls the loop must answer.
CALL_TYPES = frozenset({"function_call", "mcp_call"})


def output_text_part(text: str, logprobs: list[JsonObject] | None = None) -> Part:
    """`logprobs`: its tokens' log probabilities, when the request's `include` asked for
    them (see `app.engine.chat.logprobs`)."""
    return {
        "type": "output_text",
        "text": text,
        "annotations": [],
        "logprobs": list(logprobs or []),
    }


def reasoning_text_part(text: str) -> Part:
    return {"type": "reasoning_text", "text": text}


def new_reasoning() -> Item:
    """A reasoning item the model is about to write: its raw reasoning text, no summary."""
    return {
        "id": ids.new_id("rs"),
        "type": "reasoning",
        "summary": [],
        "content": [],
        "status": "in_progress",
    }


def new_message(status: str = "in_progress") -> Item:
    """An assistant message the model is about to write."""
    return {
        "id": ids.message_id(),
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [],
    }


def function_call_output(call: Item) -> Item:
    """The output item answering a function call, before it has run."""
    return {
        "id": ids.new_id("fco"),
        "type": "function_call_output",
        "call_id": call["call_id"],
        "output": "",
        "status": "in_progress",
    }


def is_call(item: Item) -> bool:
    return item["type"] in CALL_TYPES


def call_key(call: Item) -> str:
    """What identifies a tool call across retries: its call id (an mcp_call's item id)."""
    return str(call.get("call_id") or call["id"])


def reasoning_text(item: Item) -> str:
    """The text of a reasoning item: its `reasoning_text` parts, joined as streamed."""
    return "".join(
        part.get("text") or ""
        for part in item.get("content") or []
        if isinstance(part, dict) and part.get("type") == "reasoning_text"
    )


#: Where a compaction item keeps the summary its blob seals, opened when the request was
#: accepted (`input_resolution`). It stays on the stored item, so a conversation continued
#: later reads it even after the key that sealed it is retired, and is never shown.
OPENED_SUMMARY = "opened_summary"


def compaction_item(item_id: str, encrypted_content: str) -> Item:
    """A compaction item as the client sees it: the summary sealed in its blob."""
    return {"id": item_id, "type": "compaction", "encrypted_content": encrypted_content}


def compaction_summary(item: Item) -> str:
    """The summary an opened compaction item holds ("" if it was never opened)."""
    summary = item.get(OPENED_SUMMARY)
    return summary if isinstance(summary, str) else ""


def as_shown(item: Item) -> Item:
    """An item as the client may see it: without what Ferry keeps for itself on it."""
    if OPENED_SUMMARY not in item:
        return item
    return {key: value for key, value in item.items() if key != OPENED_SUMMARY}
