"""Translate Responses API input items into a chat-completions `messages` list.

Pure functions only: the input items are already validated, so this module trusts their
shape and never performs I/O. Input dicts are never mutated; every emitted message is a
fresh dict.

Reasoning travels the way reasoning upstreams (vLLM, SGLang, DeepSeek) stream it: as the
`reasoning_content` of the assistant message of the same turn. A reasoning item opens that
message; the turn's text and tool calls that follow fill it in.

An `mcp_approval_request` is the model's call, and its answer comes later in the
conversation (a denial, or the `mcp_call` of an approved call); chat wants the result right
after the call, so the tool message is put there. A request never answered is told to the
model as a call that did not run.
A compaction item stands for the conversation it summarised: it becomes a user message
holding the summary (`SUMMARY_PREFIX`), where it is. A user message rather than a system
one, since many chat templates refuse a system message anywhere but first.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.engine.approvals import UNANSWERED_TEXT, denial_text
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
    # approval request id -> the assistant message holding its call, until it is answered
    awaiting_answer: dict[str, ChatMessage] = field(default_factory=dict)

    def append(self, message: ChatMessage) -> None:
        self.messages.append(message)
        self.awaiting_turn = None

    def answer(self, call_id: str, content: str) -> bool:
        """Put the result of an awaiting call right after the tool results already given for
        its turn; False when no call awaits it."""
        holder = self.awaiting_answer.pop(call_id, None)
        if holder is None:
            return False
        at = next(i for i, message in enumerate(self.messages) if message is holder) + 1
        while at < len(self.messages) and self.messages[at]["role"] == "tool":
            at += 1
        result = {"role": "tool", "tool_call_id": call_id, "content": content}
        if at == len(self.messages):
            self.append(result)
        else:
            self.messages.insert(at, result)
        return True


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
    for call_id in list(transcript.awaiting_answer):
        transcript.answer(call_id, _error_content(UNANSWERED_TEXT))
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
        elif part.get("type") in _TEXT_KEY_BY_PART_TYPE or part.get("type") == "input_file":
            parts.append({"type": "text", "text": _part_text(part)})
    return parts


def file_text(part: Part) -> str:
    """An `input_file` part as the model reads it: the file's text (read when the request
    was accepted, `app.engine.input_files`) between tags naming the file, on lines of their
    own so it never runs into the text around it."""
    name = part.get("filename") or part.get("file_url") or "file"
    quoted = json.dumps(name, ensure_ascii=False)
    return f"\n<file name={quoted}>\n{part.get('text', '')}\n</file>\n"


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
    if part.get("type") == "input_file":
        return file_text(part)
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
    error = item.get("error")
    if error is not None:
        content = _error_content(mcp_error_text(error))
    else:
        content = item.get("output") or ""
    approval_id = item.get("approval_request_id")
    if approval_id and transcript.answer(approval_id, content):
        return  # an approved call: its request stood for the call
    # One Responses item holds both the call and its result; chat needs both messages.
    call = {"call_id": item["id"], "name": item["name"], "arguments": item.get("arguments", "")}
    _append_function_call(transcript, call)
    transcript.append({"role": "tool", "tool_call_id": item["id"], "content": content})


def _append_approval_request(transcript: _Transcript, item: Item) -> None:
    call = {"call_id": item["id"], "name": item["name"], "arguments": item.get("arguments", "")}
    _append_function_call(transcript, call)
    transcript.awaiting_answer[item["id"]] = transcript.messages[-1]


def _append_approval_response(transcript: _Transcript, item: Item) -> None:
    # An approval is answered by the `mcp_call` of the call it let run.
    if not item["approve"]:
        transcript.answer(item["approval_request_id"], _error_content(denial_text(item)))


def _error_content(text: str) -> str:
    """A tool result that tells the model its call failed, or never ran."""
    return json.dumps({"error": text})


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
    "mcp_approval_request": _append_approval_request,
    "mcp_approval_response": _append_approval_response,
    "reasoning": _append_reasoning,
    "compaction": _append_compaction,
}
