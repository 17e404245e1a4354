"""What the fake model answers: an echo, a summary of tool results, or tool calls.

Pure functions of the request and its directives, so tests can assert on exact text, token
counts and tool-call ids.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from tests.fakes.upstream.directives import Directives, JSONObject, split_directives

# Small enough that even short argument objects arrive in several chunks, which is what
# exercises the client's argument re-assembly.
ARGUMENT_PIECE_CHARS = 8

_TOKEN_RE = re.compile(r"\S+\s*")


def message_text(message: JSONObject) -> str:
    """The text of a message whose content is a string or a list of content parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        )
    return ""


def count_prompt_tokens(messages: list[JSONObject]) -> int:
    """Whitespace-separated words across all messages; never 0, like a real tokenizer."""
    return max(1, sum(len(message_text(message).split()) for message in messages))


def tool_results_reply(messages: list[JSONObject]) -> str:
    """Summarise the trailing run of ``tool`` messages as ``name=content`` pairs."""
    trailing: list[JSONObject] = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        trailing.append(message)
    trailing.reverse()
    names = _tool_call_names(messages)
    parts = []
    for message in trailing:
        call_id = str(message.get("tool_call_id", ""))
        parts.append(f"{names.get(call_id, call_id)}={message_text(message)}")
    return "Tool results: " + "; ".join(parts)


def _tool_call_names(messages: list[JSONObject]) -> dict[str, str]:
    names: dict[str, str] = {}
    for message in messages:
        if message.get("role") != "assistant":
            continue
        for call in message.get("tool_calls") or []:
            if not isinstance(call, dict):
                continue
            function = call.get("function")
            if isinstance(function, dict) and isinstance(function.get("name"), str):
                names[str(call.get("id"))] = function["name"]
    return names


def tool_call_id(source_text: str, index: int) -> str:
    """Deterministic call id, so tests can predict it and replays produce the same one."""
    digest = hashlib.sha256(f"{source_text}{index}".encode()).hexdigest()
    return f"call_{digest[:24]}"


def _tool_names(tools: Any) -> list[str]:
    if not isinstance(tools, list):
        return []
    names = []
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        function = tool.get("function")
        # Also accept the flat Responses-API tool shape; it costs nothing.
        name = function.get("name") if isinstance(function, dict) else tool.get("name")
        if isinstance(name, str):
            names.append(name)
    return names


def choose_tool_calls(body: JSONObject, directives: Directives) -> list[tuple[str, JSONObject]]:
    """The tool calls to answer with; empty means a text answer."""
    names = _tool_names(body.get("tools"))
    tool_choice = body.get("tool_choice")
    if not names or tool_choice == "none":
        return []
    calls = [(name, args) for name, args in directives.calls if name in names]
    if calls:
        return calls
    if tool_choice == "required":
        return [(names[0], {})]
    if isinstance(tool_choice, dict):
        function = tool_choice.get("function")
        forced = function.get("name") if isinstance(function, dict) else None
        if forced in names:
            return [(forced, {})]
    return []


@dataclass
class Reply:
    """What the completion will contain, as stream deltas plus the assembled message."""

    deltas: list[JSONObject]
    finish_reason: str
    completion_tokens: int
    content: str | None
    tool_calls: list[JSONObject]
    reasoning: str | None = None  # sent under `reasoning_field`
    reasoning_field: str | None = None
    reasoning_tokens: int = 0


def text_reply(text: str, max_tokens: int | None) -> Reply:
    tokens = _TOKEN_RE.findall(text)
    finish_reason = "stop"
    if max_tokens is not None and len(tokens) > max_tokens:
        tokens = tokens[:max_tokens]
        finish_reason = "length"
    deltas: list[JSONObject] = [{"content": token} for token in tokens]
    if deltas:
        deltas[0] = {"role": "assistant", **deltas[0]}
    else:
        deltas = [{"role": "assistant", "content": ""}]
    return Reply(deltas, finish_reason, len(tokens), "".join(tokens), [])


def tool_calls_reply(calls: list[tuple[str, JSONObject]], source_text: str) -> Reply:
    deltas: list[JSONObject] = []
    assembled: list[JSONObject] = []
    for index, (name, args) in enumerate(calls):
        call_id = tool_call_id(source_text, index)
        arguments = json.dumps(args)
        head: JSONObject = {
            "tool_calls": [
                {
                    "index": index,
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": ""},
                }
            ]
        }
        # Like content replies, the very first chunk announces the role.
        deltas.append({"role": "assistant", **head} if index == 0 else head)
        for start in range(0, len(arguments), ARGUMENT_PIECE_CHARS):
            piece = arguments[start : start + ARGUMENT_PIECE_CHARS]
            deltas.append({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        assembled.append(
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        )
    # Every streamed chunk counts as one generated token.
    return Reply(deltas, "tool_calls", len(deltas), None, assembled)


def build_reply(body: JSONObject, directives: Directives, max_tokens: int | None) -> Reply:
    reply = _answer(body, directives, max_tokens)
    if directives.think is None:
        return reply
    return with_thinking(reply, thought_for(body["messages"]), directives.think)


def thought_for(messages: list[JSONObject]) -> str:
    """What the model thinks before it answers: each turn of a tool loop thinks its own."""
    last = messages[-1]
    if last.get("role") == "user":
        visible, _ = split_directives(message_text(last))
        return f"Thinking about: {visible}"
    if last.get("role") == "tool":
        return "Thinking about the tool results."
    return "Thinking."


def with_thinking(reply: Reply, thought: str, style: str) -> Reply:
    """`reply` preceded by `thought`, streamed word by word: in a delta field of its own
    (`reasoning_content` or `reasoning`), or for `tags` in the content between `<think>` and
    `</think>`, both tags split across chunks as a tokenizer would split them."""
    words = _TOKEN_RE.findall(thought)
    if style == "tags":
        pieces = ["<th", "ink>", *words, "</th", "ink>\n\n"]
        thinking: list[JSONObject] = [{"content": piece} for piece in pieces]
        content = f"<think>{thought}</think>\n\n{reply.content or ''}"
        reasoning, field, reasoning_tokens = None, None, 0  # no parser counts it apart
    else:
        thinking = [{style: word} for word in words]
        content, reasoning, field, reasoning_tokens = reply.content, thought, style, len(words)
    # The role is announced once, by the first chunk.
    answer = [{k: v for k, v in delta.items() if k != "role"} for delta in reply.deltas]
    answer = [delta for delta in answer if delta != {"content": ""}]
    return dataclasses.replace(
        reply,
        deltas=[{"role": "assistant", **thinking[0]}, *thinking[1:], *answer],
        completion_tokens=reply.completion_tokens + len(words),
        content=content,
        reasoning=reasoning,
        reasoning_field=field,
        reasoning_tokens=reasoning_tokens,
    )


def _answer(body: JSONObject, directives: Directives, max_tokens: int | None) -> Reply:
    messages: list[JSONObject] = body["messages"]
    last = messages[-1]
    role = last.get("role")
    if role == "user":
        # Tool calls are only made when the user spoke last: replaying a call directive after
        # its results came back would make every agent loop spin forever.
        raw_text = message_text(last)
        calls = choose_tool_calls(body, directives)
        if calls:
            return tool_calls_reply(calls, raw_text)
        visible, _ = split_directives(raw_text)
        return text_reply("Hello! You said: " + visible, max_tokens)
    if role == "tool":
        names = _tool_names(body.get("tools"))
        again = [(name, args) for name, args in directives.then_calls if name in names]
        if again and body.get("tool_choice") != "none":
            # Seeded with the conversation length: each round gets fresh call ids.
            return tool_calls_reply(again, f"{message_text(messages[0])}#{len(messages)}")
        return text_reply(tool_results_reply(messages), max_tokens)
    return text_reply("Hello!", max_tokens)


def token_logprobs(token: str, top: int) -> JSONObject:
    """The chat `logprobs.content` entry for a streamed token: a log probability that
    depends on the token alone (so tests can predict it), with `top` alternatives, the token
    itself first, then made-up spellings each one less likely."""
    chosen = -round(len(token) / 10, 4)
    alternatives = [token, *(f"{token.strip()}{'*' * n}" for n in range(1, top))][:top]
    return {
        "token": token,
        "logprob": chosen,
        "bytes": list(token.encode()),
        "top_logprobs": [
            {"token": t, "logprob": round(chosen - n, 4), "bytes": list(t.encode())}
            for n, t in enumerate(alternatives)
        ],
    }


def build_usage(reply: Reply, prompt_tokens: int, directives: Directives) -> JSONObject:
    completion_tokens = reply.completion_tokens
    if directives.anthropic_usage:
        # Some gateways pass Anthropic's usage through untranslated; Ferry must cope.
        return {
            "input_tokens": prompt_tokens,
            "output_tokens": completion_tokens,
            "cache_read_input_tokens": 3,
            "cache_creation_input_tokens": 2,
        }
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 2 if directives.reasoning else 0},
        "completion_tokens_details": {
            "reasoning_tokens": 5 if directives.reasoning else reply.reasoning_tokens
        },
    }
