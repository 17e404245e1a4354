"""The fake's HTTP surface: the completion endpoint with its faults, models, request spy."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.upstream.directives import (
    Directives,
    JSONObject,
    parse_directives,
    split_directives,
)
from tests.fakes.upstream.replies import (
    Reply,
    build_reply,
    build_usage,
    count_prompt_tokens,
    message_text,
    token_logprobs,
)

MODEL = "demo"
#: A model listed with a context size (vLLM's `max_model_len`), in the fake's tokens.
SMALL_MODEL = "demo-small"
SMALL_MODEL_CONTEXT_TOKENS = 60
MAX_RECORDED_REQUESTS = 200
# Fixed so /models is byte-for-byte stable across runs.
_MODEL_CREATED = 1_700_000_000
MID_STREAM_ERROR: JSONObject = {
    "error": {
        "message": "demo upstream failed mid-stream",
        "type": "server_error",
        "code": "upstream_error",
    }
}


def _error_response(
    status_code: int,
    message: str,
    error_type: str,
    headers: dict[str, str] | None = None,
    code: str | None = None,
) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": error_type, "param": None, "code": code}},
        status_code=status_code,
        headers=headers,
    )


def _directed_error(code: int, directives: Directives) -> JSONResponse:
    """The error a `status` or `fail-first` directive asks for, as the directives shape it."""
    headers = {"Retry-After": directives.retry_after} if directives.retry_after else None
    message = directives.error_message or f"demo upstream error {code}"
    return _error_response(code, message, "server_error", headers, directives.error_code)


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
    # The alternatives each token's logprobs carry; None when `logprobs` was not asked for.
    top_logprobs: int | None = None

    def logprobs(self, tokens: list[str]) -> JSONObject | None:
        """A choice's `logprobs`: an entry per token of text, or null when not asked for."""
        if self.top_logprobs is None:
            return None
        content = [token_logprobs(token, self.top_logprobs) for token in tokens if token]
        return {"content": content, "refusal": None}

    def chunk(self, delta: JSONObject, finish_reason: str | None) -> JSONObject:
        logprobs = self.logprobs([delta["content"]] if delta.get("content") else [])
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": logprobs}
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
        if self.reply.reasoning_field is not None:
            message[self.reply.reasoning_field] = self.reply.reasoning
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
                    "logprobs": self.logprobs([d.get("content") or "" for d in self.reply.deltas]),
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
    error = _invalid_logprobs(body) if isinstance(body, dict) else None
    if error is not None:
        return None, error
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


def _invalid_logprobs(body: JSONObject) -> JSONResponse | None:
    """OpenAI's rules: `logprobs` a boolean; `top_logprobs` 0-20, and only with `logprobs`."""
    logprobs, top = body.get("logprobs"), body.get("top_logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        return _invalid_request("'logprobs' must be a boolean.")
    if top is None:
        return None
    if isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= 20:
        return _invalid_request("'top_logprobs' must be an integer between 0 and 20.")
    if logprobs is not True:
        return _invalid_request("'top_logprobs' requires 'logprobs' to be true.")
    return None


def _top_logprobs(body: JSONObject) -> int | None:
    """How many alternatives each token's logprobs carry; None when none were asked for."""
    if body.get("logprobs") is not True:
        return None
    top = body.get("top_logprobs")
    return top if isinstance(top, int) else 0


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
    return _directed_error(code, directives)


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
        # The client's end of the connection: one connection kept for several requests
        # shows the same peer in each.
        "peer": f"{request.client.host}:{request.client.port}" if request.client else None,
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
        return _directed_error(directives.status, directives)
    if directives.then_status is not None and messages[-1].get("role") == "tool":
        return _directed_error(directives.then_status, directives)

    reply = build_reply(body, directives, max_tokens)
    usage = None
    if not directives.no_usage:
        usage = build_usage(reply, count_prompt_tokens(messages), directives)
    model = body.get("model")
    completion = Completion(
        id=f"chatcmpl-{uuid.uuid4().hex[:24]}",
        created=int(time.time()),
        model=model if isinstance(model, str) else MODEL,
        reply=reply,
        usage=usage,
        directives=directives,
        top_logprobs=_top_logprobs(body),
    )
    if body.get("stream") is not True or directives.no_stream:
        return await complete_once(completion)
    stream_options = body.get("stream_options")
    include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
    return StreamingResponse(
        _tracked(stream_completion(completion, include_usage), record),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )


async def list_models(request: Request) -> JSONResponse:
    listed = {"object": "model", "created": _MODEL_CREATED, "owned_by": "ferry-demo"}
    small = {"id": SMALL_MODEL, **listed, "max_model_len": SMALL_MODEL_CONTEXT_TOKENS}
    return JSONResponse({"object": "list", "data": [{"id": MODEL, **listed}, small]})


async def tokenize(request: Request) -> JSONResponse:
    """vLLM's `/tokenize` for chat messages: the count of the prompt's tokens, as the fake
    counts them for usage (words)."""
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _invalid_request("Request body is not valid JSON.")
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        return _invalid_request("'messages' must be an array of messages.")
    count = count_prompt_tokens(messages)
    model = body.get("model")
    max_model_len = SMALL_MODEL_CONTEXT_TOKENS if model == SMALL_MODEL else None
    return JSONResponse({"count": count, "max_model_len": max_model_len, "tokens": [0] * count})


async def recorded_requests(request: Request) -> JSONResponse:
    return JSONResponse(list(request.app.state.recorded_requests))


async def clear_recorded_requests(request: Request) -> JSONResponse:
    recorded: deque[JSONObject] = request.app.state.recorded_requests
    cleared = len(recorded)
    recorded.clear()
    return JSONResponse({"cleared": cleared})


def create_app() -> Starlette:
    """A fresh fake upstream with its own (empty) request log."""
    app = Starlette(
        routes=[
            Route("/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/models", list_models, methods=["GET"]),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/tokenize", tokenize, methods=["POST"]),
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
