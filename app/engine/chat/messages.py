"""Translate Responses API input items into a chat-completions `messages` list.

Pure functions only: the input items are already validated, so this module trusts their
shape and never performs I/O. Input dicts are never mutated; every emitted message is a
fresh dict.

Reasoning travels the way reasoning upstreams (vLLM, SGLang, DeepSeek) stream it: as the
`reasoning_content` of the assistant message of the same turn. A reasoning item opens that
message; the turn's text and tool calls that follow fill it in.

A compaction item stands for the conversation it summarised: it becomes a user message
holding the summary (`SUMMARY_PREFIX`), where it is. A user message rather than a system
one, since many chat templates refuse a system message anywhere but first.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.engine.items import compaction_summary, reasoning_text
from app.engine.tools.mcp_errors import error_text as mcp_error_text
from app.shapes import Item, JsonObject, Part

ChatMessage = dict[str, Any]
ItemHandler = Callable[["_Transcript", Item], None]

# Many upstreams (vLLM, llama.cpp, older proxies) reject the `developer` role, and for a
# chat model it means the same thing as `system`, so it is folded into `system`.
_CHAT_ROLE_BY_RESPONSES_ROLE: dict[str, str] = {
    "user": "user",
    "system": "system",
    "developer": "system",
    "assistant": "assistant",
}

# Part types whose text lives under a key other than `text`.
_TEXT_KEY_BY_PART_TYPE: dict[str, str] = {
    "input_text": "text",
    "output_text": "text",
    "refusal": "refusal",
}


# Where the reasoning goes on a chat assistant message.
REASONING_KEY = "reasoning_content"
#: How the message a compaction item becomes begins; the summary follows.
SUMMARY_PREFIX = "Summary of the earlier conversation: "


@dataclass
class _Transcript:
    """The chat messages built so far, and the assistant message a reasoning item opened
    while its turn's text or calls have not come yet (it is always the last message)."""

    messages: list[ChatMessage] = field(default_factory=list)
    awaiting_turn: ChatMessage | None = None

    def append(self, message: ChatMessage) -> None:
        self.messages.append(message)
        self.awaiting_turn = None


def to_chat_messages(
    instructions: str | None, items: list[Item], *, send_reasoning: bool = True
) -> list[ChatMessage]:
    """Build the chat `messages` list for `instructions` followed by the input `items`.

    Without `send_reasoning` (an upstream that rejects the field), reasoning items are left
    out.
    """
    transcript = _Transcript()
    if instructions:
        transcript.append({"role": "system", "content": instructions})
    for item in items:
        kind = item.get("type", "")
        if kind == "reasoning" and not send_reasoning:
            continue
        handler = _ITEM_HANDLERS.get(kind)
        # Item types without a handler (mcp_list_tools, ...) have no chat equivalent;
        # dropping them keeps the rest of the conversation usable.
        if handler is not None:
            handler(transcript, item)
    return transcript.messages


def _append_reasoning(transcript: _Transcript, item: Item) -> None:
    text = reasoning_text(item)
    if not text:
        return  # a summary alone is not the model's reasoning: nothing to carry
    if transcript.awaiting_turn is not None:
        # Several reasoning items in one turn: one message holds their thoughts in order.
        transcript.awaiting_turn[REASONING_KEY] += "\n\n" + text
        return
    # The turn's assistant message, with no text yet; a lone reasoning item leaves it so.
    opened = {"role": "assistant", "content": "", REASONING_KEY: text}
    transcript.append(opened)
    transcript.awaiting_turn = opened


def _append_message(transcript: _Transcript, item: Item) -> None:
    role = item.get("role", "user")
    chat_role = _CHAT_ROLE_BY_RESPONSES_ROLE.get(role, role)
    content = message_content(item.get("content"))
    if chat_role == "assistant" and transcript.awaiting_turn is not None:
        # The text of the turn whose reasoning came just before.
        transcript.awaiting_turn["content"] = content
        transcript.awaiting_turn = None
        return
    transcript.append({"role": chat_role, "content": content})


def message_content(content: str | list[Part] | None) -> str | list[JsonObject]:
    """Chat `content` for a Responses message: a string unless an image forces chat parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if any(part.get("type") == "input_image" for part in content):
        return _chat_parts(content)
    # A plain string is the lowest common denominator: several upstreams refuse part lists
    # for assistant messages, and joining with "" preserves streamed text exactly.
    return "".join(_part_text(part) for part in content)


def _chat_parts(content: list[Part]) -> list[JsonObject]:
    parts: list[JsonObject] = []
    for part in content:
        if part.get("type") == "input_image":
            image_part = _image_part(part)
            if image_part is not None:
                parts.append(image_part)
        elif part.get("type") in _TEXT_KEY_BY_PART_TYPE:
            parts.append({"type": "text", "text": _part_text(part)})
    return parts


def _image_part(part: Part) -> JsonObject | None:
    url = part.get("image_url")
    # An image referenced only by `file_id` cannot be expressed to a chat upstream.
    if not url:
        return None
    # Data URLs are valid chat `image_url` values too, so the url is passed through as-is.
    image_url: JsonObject = {"url": url}
    if part.get("detail") is not None:
        image_url["detail"] = part["detail"]
    return {"type": "image_url", "image_url": image_url}


def _part_text(part: Part) -> str:
    key = _TEXT_KEY_BY_PART_TYPE.get(part.get("type", ""), "text")
    text = part.get(key)
    return text if isinstance(text, str) else ""


def _append_function_call(transcript: _Transcript, item: Item) -> None:
    tool_call = {
        "id": item["call_id"],
        "type": "function",
        "function": {"name": item["name"], "arguments": item.get("arguments", "")},
    }
    # Chat models express parallel calls as several tool_calls on ONE assistant message, and
    # text followed by calls as one message with both; so a call joins the assistant message
    # just before it (either a prior call of the same run or the text of the same turn).
    # A reasoning item before them opened that message.
    messages = transcript.messages
    if messages and messages[-1].get("role") == "assistant":
        if transcript.awaiting_turn is not None:
            transcript.awaiting_turn["content"] = None  # calls only, as chat models send them
            transcript.awaiting_turn = None
        messages[-1].setdefault("tool_calls", []).append(tool_call)
        return
    transcript.append({"role": "assistant", "content": None, "tool_calls": [tool_call]})


def _append_function_call_output(transcript: _Transcript, item: Item) -> None:
    transcript.append(
        {
            "role": "tool",
            "tool_call_id": item["call_id"],
            "content": tool_output_text(item.get("output")),
        }
    )


def _append_mcp_call(transcript: _Transcript, item: Item) -> None:
    # One Responses item holds both the call and its result; chat needs both messages.
    call = {"call_id": item["id"], "name": item["name"], "arguments": item.get("arguments", "")}
    _append_function_call(transcript, call)
    error = item.get("error")
    if error is not None:
        content = json.dumps({"error": mcp_error_text(error)})
    else:
        content = item.get("output") or ""
    transcript.append({"role": "tool", "tool_call_id": item["id"], "content": content})


def _append_compaction(transcript: _Transcript, item: Item) -> None:
    transcript.append({"role": "user", "content": SUMMARY_PREFIX + compaction_summary(item)})


def tool_output_text(output: str | list[Part] | None) -> str:
    """Chat tool messages take text only, so non-text output parts (images, files) drop."""
    if output is None:
        return ""
    if isinstance(output, str):
        return output
    return "".join(_part_text(part) for part in output)


# Dispatch by Responses item type; support for another item type is one entry here.
_ITEM_HANDLERS: dict[str, ItemHandler] = {
    "message": _append_message,
    "function_call": _append_function_call,
    "function_call_output": _append_function_call_output,
    "mcp_call": _append_mcp_call,
    "reasoning": _append_reasoning,
    "compaction": _append_compaction,
}
