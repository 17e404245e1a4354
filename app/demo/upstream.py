"""Demo upstream: a deterministic stand-in for an OpenAI-compatible chat-completions server.

Ferry needs *some* chat-completions upstream to talk to. For local runs (the ``dev`` command)
and for the test suite we ship this one: it needs no API key and no network, and its answers
are a pure function of the request, so tests can assert on exact text, token counts and
tool-call ids.

Surface
-------
``create_app()`` returns a Starlette app with these routes:

* ``POST /chat/completions`` and ``POST /v1/chat/completions`` - the completion endpoint,
  streaming (SSE, OpenAI wire format) or not.
* ``GET /models`` and ``GET /v1/models`` - an OpenAI list holding the single model ``demo``
  (any ``model`` name is accepted by the completion endpoint and echoed back, though).
* ``GET /_demo/requests`` - the completion requests received so far, oldest first, at most
  the last 200: ``[{"headers": {"authorization": str | None}, "body": <parsed JSON>}, ...]``.
* ``DELETE /_demo/requests`` - forget them.

Replies
-------
* Last message from ``user``: ``"Hello! You said: <its text>"``, with ``[[...]]`` directives
  removed and whitespace collapsed.
* Last message from ``tool``: ``"Tool results: name=content; ..."`` over the trailing run of
  tool messages.
* Anything else: ``"Hello!"``.

The reply is split into word tokens (``\\S+\\s*``), one streamed chunk each; ``max_tokens`` /
``max_completion_tokens`` truncate it with ``finish_reason="length"``.

Directives (only read from the most recent ``user`` message)
----------------------------------------------------------
* ``[[call:NAME {"json": "args"}]]`` - answer with a call to tool NAME (must be in ``tools``;
  ``tool_choice`` must not be ``"none"``; only when that user message is the last message, so
  a tool-result turn always gets a text answer and agent loops terminate). Repeatable.
  ``tool_choice="required"`` or a named function forces a call with ``{}`` args when there
  is no directive.
* ``[[then-call:NAME {"json": "args"}]]`` - after every tool result, call NAME again (a
  model that never stops calling tools; each round has fresh call ids).
* ``[[status:CODE]]`` - fail the request with HTTP CODE (400-599) and an OpenAI error body.
* ``[[fail-first:N:CODE]]`` - fail the first N requests whose last user message has the same
  visible text (directives removed) with HTTP CODE (400-599, default 503) and an OpenAI error
  body; later ones are answered normally. Counted per app, so a client's retries can be
  exercised end to end.
* ``[[cut-first:N]]`` - the first N requests whose last user message has the same visible
  text are cut off after the first tokens, as ``[[cut]]``; later ones stream normally.
* ``[[retry-after:S]]`` - with ``fail-first``: send ``Retry-After: S`` (seconds, decimals
  allowed) on those failures.
* ``[[cut]]`` - stream the first half of the chunks, then end the body (no finish, no
  ``[DONE]``).
* ``[[empty]]`` - 200 with an empty body.
* ``[[mid-error]]`` - first half of the chunks, then an ``{"error": ...}`` data line, then end.
* ``[[no-usage]]`` - never report usage.
* ``[[anthropic-usage]]`` - report usage in Anthropic's field names.
* ``[[reasoning]]`` - report 5 reasoning tokens and 2 cached prompt tokens.
* ``[[delay:MS]]`` - sleep MS milliseconds between streamed chunks.

Unknown ``[[...]]`` directives are removed from the echoed text and otherwise ignored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import re
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

JSONObject = dict[str, Any]

DEMO_MODEL = "demo"
MAX_RECORDED_REQUESTS = 200
# Small enough that even short argument objects arrive in several chunks, which is what
# exercises the client's argument re-assembly.
ARGUMENT_PIECE_CHARS = 8
# Fixed so /models is byte-for-byte stable across runs.
_MODEL_CREATED = 1_700_000_000
MID_STREAM_ERROR: JSONObject = {
    "error": {
        "message": "demo upstream failed mid-stream",
        "type": "server_error",
        "code": "upstream_error",
    }
}

_TOKEN_RE = re.compile(r"\S+\s*")
_CALL_HEAD_RE = re.compile(r"\s*call:\s*[^\s\[\]{}]+\s*")
_DIRECTIVE_CLOSE_RE = re.compile(r"\s*\]\]")
_CALL_BODY_RE = re.compile(r"([^\s{]+)\s*(.*)", re.DOTALL)
_JSON_DECODER = json.JSONDecoder()


# --------------------------------------------------------------------------- directives


@dataclass
class Directives:
    """The ``[[...]]`` instructions found in a user message."""

    calls: list[tuple[str, JSONObject]] = field(default_factory=list)
    # Calls made again after every tool result: a model that never stops calling tools.
    then_calls: list[tuple[str, JSONObject]] = field(default_factory=list)
    status: int | None = None
    # (N, CODE): fail the first N requests with the same visible text with HTTP CODE.
    fail_first: tuple[int, int] | None = None
    cut_first: int | None = None
    retry_after: str | None = None
    cut: bool = False
    empty: bool = False
    mid_error: bool = False
    no_usage: bool = False
    anthropic_usage: bool = False
    reasoning: bool = False
    delay_ms: int = 0


def split_directives(text: str) -> tuple[str, list[str]]:
    """Split ``text`` into (visible text, whitespace collapsed; directive bodies in order)."""
    kept: list[str] = []
    bodies: list[str] = []
    pos = 0
    while (start := text.find("[[", pos)) != -1:
        end = _directive_end(text, start)
        if end is None:
            # An unclosed "[[" is ordinary text, not a directive.
            break
        kept.append(text[pos:start])
        bodies.append(text[start + 2 : end - 2].strip())
        pos = end
    kept.append(text[pos:])
    # Join with a space so "a[[cut]]b" reads as two words, then collapse.
    return " ".join(" ".join(kept).split()), bodies


def _directive_end(text: str, start: int) -> int | None:
    """Index just past the ``]]`` closing the directive opened at ``start``."""
    # Call arguments are JSON and may themselves contain "]]" (nested arrays), so for
    # those we let the JSON decoder find where the object ends.
    head = _CALL_HEAD_RE.match(text, start + 2)
    if head is not None and text.startswith("{", head.end()):
        try:
            _, args_end = _JSON_DECODER.raw_decode(text, head.end())
        except json.JSONDecodeError:
            pass
        else:
            close = _DIRECTIVE_CLOSE_RE.match(text, args_end)
            if close is not None:
                return close.end()
    close_at = text.find("]]", start + 2)
    return None if close_at == -1 else close_at + 2


def parse_directives(bodies: list[str]) -> Directives:
    """Interpret directive bodies (as returned by :func:`split_directives`)."""
    found = Directives()
    for body in bodies:
        name, _, arg = body.partition(":")
        match name.strip().lower():
            case "call":
                call = _parse_call(arg)
                if call is not None:
                    found.calls.append(call)
            case "then-call":
                call = _parse_call(arg)
                if call is not None:
                    found.then_calls.append(call)
            case "status":
                code = _parse_int(arg)
                if code is not None and 400 <= code <= 599:
                    found.status = code
            case "cut-first":
                found.cut_first = _parse_int(arg)
            case "fail-first":
                found.fail_first = _parse_fail_first(arg) or found.fail_first
            case "retry-after":
                found.retry_after = _parse_seconds(arg) or found.retry_after
            case "delay":
                delay = _parse_int(arg)
                if delay is not None and delay >= 0:
                    found.delay_ms = delay
            case "cut":
                found.cut = True
            case "empty":
                found.empty = True
            case "mid-error":
                found.mid_error = True
            case "no-usage":
                found.no_usage = True
            case "anthropic-usage":
                found.anthropic_usage = True
            case "reasoning":
                found.reasoning = True
            case _:
                pass  # Unknown directives are only stripped from the text.
    return found


def _parse_call(arg: str) -> tuple[str, JSONObject] | None:
    match = _CALL_BODY_RE.fullmatch(arg.strip())
    if match is None:
        return None
    name, raw_args = match.group(1), match.group(2).strip()
    if not raw_args:
        return name, {}
    try:
        args = json.loads(raw_args)
    except json.JSONDecodeError:
        return None
    # Tool arguments are always a JSON object in the OpenAI API; anything else is a typo.
    return (name, args) if isinstance(args, dict) else None


def _parse_int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def _parse_fail_first(arg: str) -> tuple[int, int] | None:
    """``N`` or ``N:CODE`` as (N, CODE); None when malformed."""
    count_text, _, code_text = arg.partition(":")
    count = _parse_int(count_text)
    code = _parse_int(code_text) if code_text.strip() else 503
    if count is None or count < 0 or code is None or not 400 <= code <= 599:
        return None
    return count, code


def _parse_seconds(arg: str) -> str | None:
    """A non-negative number of seconds, kept as written so it is sent back verbatim."""
    text = arg.strip()
    try:
        seconds = float(text)
    except ValueError:
        return None
    return text if 0 <= seconds < float("inf") else None


# --------------------------------------------------------------------------- messages


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


# --------------------------------------------------------------------------- replies


@dataclass
class Reply:
    """What the completion will contain, as stream deltas plus the assembled message."""

    deltas: list[JSONObject]
    finish_reason: str
    completion_tokens: int
    content: str | None
    tool_calls: list[JSONObject]


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


def build_usage(prompt_tokens: int, completion_tokens: int, directives: Directives) -> JSONObject:
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
        "completion_tokens_details": {"reasoning_tokens": 5 if directives.reasoning else 0},
    }


# --------------------------------------------------------------------------- HTTP


def _error_response(
    status_code: int, message: str, error_type: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": error_type, "param": None, "code": None}},
        status_code=status_code,
        headers=headers,
    )


def _invalid_request(message: str) -> JSONResponse:
    return _error_response(400, message, "invalid_request_error")


def _sse(payload: JSONObject) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


def _truncated(deltas: list[JSONObject]) -> list[JSONObject]:
    """The first half of the chunks, but at least one, so the failure is *mid*-stream."""
    return deltas[: max(1, len(deltas) // 2)]


@dataclass
class Completion:
    """Everything the response writers need, decided before the first byte is sent."""

    id: str
    created: int
    model: str
    reply: Reply
    usage: JSONObject | None
    directives: Directives

    def chunk(self, delta: JSONObject, finish_reason: str | None) -> JSONObject:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
            ],
        }

    def usage_chunk(self, usage: JSONObject) -> JSONObject:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage,
        }

    def body(self) -> JSONObject:
        message: JSONObject = {
            "role": "assistant",
            "content": self.reply.content,
            "refusal": None,
        }
        if self.reply.tool_calls:
            message["tool_calls"] = self.reply.tool_calls
        body: JSONObject = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": self.reply.finish_reason,
                    "logprobs": None,
                }
            ],
        }
        if self.usage is not None:
            body["usage"] = self.usage
        return body


async def stream_completion(completion: Completion, include_usage: bool) -> AsyncIterator[bytes]:
    """SSE body. Only awaits in between chunks, so a client disconnect cancels it cleanly."""
    directives = completion.directives
    if directives.empty:
        return
    failing = directives.cut or directives.mid_error
    deltas = _truncated(completion.reply.deltas) if failing else completion.reply.deltas
    for position, delta in enumerate(deltas):
        if position and directives.delay_ms:
            await asyncio.sleep(directives.delay_ms / 1000)
        yield _sse(completion.chunk(delta, None))
    if directives.mid_error:
        yield _sse(MID_STREAM_ERROR)
        return
    if directives.cut:
        return
    yield _sse(completion.chunk({}, completion.reply.finish_reason))
    if include_usage and completion.usage is not None:
        yield _sse(completion.usage_chunk(completion.usage))
    yield b"data: [DONE]\n\n"


async def _tracked(chunks: AsyncIterator[bytes], record: JSONObject) -> AsyncIterator[bytes]:
    """Note on the request's record whether its stream was sent to the end or abandoned.

    Lets tests check that a client's cancellation really hung up on the upstream.
    """
    record["stream"] = "open"
    try:
        async for chunk in chunks:
            yield chunk
        record["stream"] = "finished"
    finally:
        if record["stream"] == "open":
            record["stream"] = "abandoned"


async def complete_once(completion: Completion) -> Response:
    """Non-streaming answer; stream-shaped faults map onto a broken JSON response."""
    directives = completion.directives
    if directives.delay_ms:
        # Same total time as the stream would take, so timeouts behave alike.
        gaps = len(completion.reply.deltas) - 1
        await asyncio.sleep(directives.delay_ms * gaps / 1000)
    if directives.empty:
        return Response(b"", media_type="application/json")
    if directives.mid_error:
        return JSONResponse(MID_STREAM_ERROR)
    if directives.cut:
        text = json.dumps(completion.body())
        return Response(text[: len(text) // 2], media_type="application/json")
    return JSONResponse(completion.body())


def _validate(body: Any) -> tuple[int | None, JSONResponse | None]:
    """Return (max tokens, None) for a usable request, or (None, error response)."""
    if not isinstance(body, dict):
        return None, _invalid_request("Request body must be a JSON object.")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None, _invalid_request("'messages' must be a non-empty array.")
    if not all(isinstance(message, dict) for message in messages):
        return None, _invalid_request("Each message must be an object.")
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    # bool is an int subclass; "max_tokens": true is a client bug, not 1.
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        return None, _invalid_request("'max_tokens' must be a positive integer.")
    return max_tokens, None


def _last_user_message(messages: list[JSONObject]) -> JSONObject | None:
    return next((m for m in reversed(messages) if m.get("role") == "user"), None)


def _failing_first(request: Request, text: str, directives: Directives) -> JSONResponse | None:
    """The error for a ``fail-first`` request still within its first N, else None."""
    if directives.fail_first is None:
        return None
    limit, code = directives.fail_first
    failures: dict[str, int] = request.app.state.fail_first_counts
    # Keyed by the visible text, so the same prompt sent again (a retry) is counted together.
    seen = failures.get(text, 0)
    if seen >= limit:
        return None
    failures[text] = seen + 1
    headers = {"Retry-After": directives.retry_after} if directives.retry_after else None
    return _error_response(code, f"demo upstream error {code}", "server_error", headers)


def _cutting_first(request: Request, text: str, directives: Directives) -> Directives:
    """``cut-first``: the first N requests with this text are cut like ``[[cut]]``."""
    if not directives.cut_first:
        return directives
    cuts: dict[str, int] = request.app.state.cut_first_counts
    seen = cuts.get(text, 0)
    if seen >= directives.cut_first:
        return directives
    cuts[text] = seen + 1
    return dataclasses.replace(directives, cut=True)


async def chat_completions(request: Request) -> Response:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _invalid_request("Request body is not valid JSON.")
    record: JSONObject = {
        "headers": {"authorization": request.headers.get("authorization")},
        "body": body,
        "stream": None,
    }
    request.app.state.recorded_requests.append(record)
    max_tokens, error = _validate(body)
    if error is not None:
        return error

    messages: list[JSONObject] = body["messages"]
    last_user = _last_user_message(messages)
    visible, directive_bodies = split_directives(message_text(last_user)) if last_user else ("", [])
    directives = parse_directives(directive_bodies)
    failure = _failing_first(request, visible, directives)
    if failure is not None:
        return failure
    directives = _cutting_first(request, visible, directives)
    if directives.status is not None:
        return _error_response(
            directives.status, f"demo upstream error {directives.status}", "server_error"
        )

    reply = build_reply(body, directives, max_tokens)
    usage = None
    if not directives.no_usage:
        usage = build_usage(count_prompt_tokens(messages), reply.completion_tokens, directives)
    model = body.get("model")
    completion = Completion(
        id=f"chatcmpl-{uuid.uuid4().hex[:24]}",
        created=int(time.time()),
        model=model if isinstance(model, str) else DEMO_MODEL,
        reply=reply,
        usage=usage,
        directives=directives,
    )
    if body.get("stream") is not True:
        return await complete_once(completion)
    stream_options = body.get("stream_options")
    include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
    return StreamingResponse(
        _tracked(stream_completion(completion, include_usage), record),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )


async def list_models(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "object": "list",
            "data": [
                {
                    "id": DEMO_MODEL,
                    "object": "model",
                    "created": _MODEL_CREATED,
                    "owned_by": "ferry-demo",
                }
            ],
        }
    )


async def recorded_requests(request: Request) -> JSONResponse:
    return JSONResponse(list(request.app.state.recorded_requests))


async def clear_recorded_requests(request: Request) -> JSONResponse:
    recorded: deque[JSONObject] = request.app.state.recorded_requests
    cleared = len(recorded)
    recorded.clear()
    return JSONResponse({"cleared": cleared})


def create_app() -> Starlette:
    """A fresh demo upstream with its own (empty) request log."""
    app = Starlette(
        routes=[
            Route("/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/models", list_models, methods=["GET"]),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/_demo/requests", recorded_requests, methods=["GET"]),
            Route("/_demo/requests", clear_recorded_requests, methods=["DELETE"]),
        ]
    )
    # Per app rather than module-global, so parallel test servers don't see each other.
    app.state.recorded_requests = deque(maxlen=MAX_RECORDED_REQUESTS)
    # `fail-first` failures sent so far, by the visible text of the last user message.
    app.state.fail_first_counts = {}
    app.state.cut_first_counts = {}
    return app
