"""A chat-completions upstream as an `httpx.MockTransport` handler, speaking the real wire
format: SSE `data:` lines carrying `chat.completion.chunk` objects, a usage chunk with empty
`choices`, then `data: [DONE]`.

    call = ToolCall("lookup_weather", {"city": "Oslo"}, "call_1")
    upstream = ScriptedUpstream(calls_reply(call), text_reply("Sunny", " today"))
    client = UpstreamClient(settings, transport=httpx.MockTransport(upstream.handler))

Each request takes the next scripted `Reply` (or asks `responder`, for an upstream that
answers by the conversation it is sent, like a real model would). A reply's body is a list
of parts: chunks, raw bytes, a `Hold` where the stream waits for the test, or an exception
raised mid-body (a dropped connection).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

Chunk = dict[str, Any]
BASE_URL = "http://upstream.test/v1"
MODEL = "test-model"


# --- chunks --------------------------------------------------------------------------------


def chunk(delta: dict[str, Any] | None = None, *, finish_reason: str | None = None) -> Chunk:
    """One `chat.completion.chunk` with a single choice."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [
            {"index": 0, "delta": delta or {}, "finish_reason": finish_reason, "logprobs": None}
        ],
    }


def text_chunks(*pieces: str) -> list[Chunk]:
    """The role chunk (empty content, as OpenAI sends it first), then one chunk a piece."""
    return [chunk({"role": "assistant", "content": ""}), *(chunk({"content": p}) for p in pieces)]


def token_logprob(token: str, logprob: float, *alternatives: tuple[str, float]) -> Chunk:
    """A `logprobs.content` entry as OpenAI sends it: the token, its UTF-8 bytes, and its
    `top_logprobs`, the token itself first, then `alternatives` (token, logprob)."""
    top = [(token, logprob), *alternatives]
    return {
        "token": token,
        "logprob": logprob,
        "bytes": list(token.encode()),
        "top_logprobs": [{"token": t, "logprob": p, "bytes": list(t.encode())} for t, p in top],
    }


def with_logprobs(c: Chunk, *entries: Chunk) -> Chunk:
    """`c` with its choice reporting `entries` as the log probabilities of its tokens."""
    [choice] = c["choices"]
    logprobs = {"content": list(entries), "refusal": None}
    return {**c, "choices": [{**choice, "logprobs": logprobs}]}


def scored_text_chunks(*tokens: Chunk) -> list[Chunk]:
    """The role chunk, then one chunk a token, carrying that token's logprobs entry."""
    return [
        chunk({"role": "assistant", "content": ""}),
        *(with_logprobs(chunk({"content": t["token"]}), t) for t in tokens),
    ]


def reasoning_chunks(*pieces: str, key: str = "reasoning_content") -> list[Chunk]:
    """Reasoning streamed in `pieces` under `key` (`reasoning_content` or `reasoning`), the
    first with the role, as upstreams with a reasoning parser send it before the answer."""
    chunks = [chunk({key: piece}) for piece in pieces]
    chunks[0]["choices"][0]["delta"]["role"] = "assistant"
    return chunks


@dataclass(frozen=True)
class ToolCall:
    """A call the model makes: the tool's name, its arguments, the upstream's call id."""

    name: str
    arguments: dict[str, Any] | str
    call_id: str

    @property
    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments)


def call_chunks(*calls: ToolCall, piece_chars: int = 7, first_index: int = 0) -> list[Chunk]:
    """Tool calls streamed one after another, as upstreams do: a head chunk with the id and
    name, then the arguments in pieces of `piece_chars` characters."""
    chunks: list[Chunk] = []
    for index, call in enumerate(calls, start=first_index):
        head = {
            "index": index,
            "id": call.call_id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        delta: dict[str, Any] = {"tool_calls": [head]}
        chunks.append(chunk(delta if chunks else {"role": "assistant", **delta}))
        arguments = call.arguments_json
        for start in range(0, len(arguments), piece_chars):
            piece = arguments[start : start + piece_chars]
            chunks.append(
                chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            )
    return chunks


def finish_chunk(reason: str = "stop") -> Chunk:
    return chunk({}, finish_reason=reason)


@dataclass(frozen=True)
class TokenUsage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    def chat(self) -> dict[str, Any]:
        """As a chat-completions upstream reports it."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }

    def responses(self) -> dict[str, Any]:
        """As the Responses API reports it."""
        return {
            "input_tokens": self.prompt_tokens,
            "output_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_tokens, "cache_write_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }


DEFAULT_USAGE = TokenUsage(prompt_tokens=12, completion_tokens=3)


def usage_chunk(usage: TokenUsage) -> Chunk:
    """The last chunk when `stream_options.include_usage` is set: no choices, the usage."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [],
        "usage": usage.chat(),
    }


def error_chunk(message: str) -> dict[str, Any]:
    """What an upstream sends mid-stream when it fails after starting."""
    return {"error": {"message": message, "type": "server_error"}}


def sse(data: Chunk) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()


DONE = b"data: [DONE]\n\n"


# --- replies -------------------------------------------------------------------------------


@dataclass
class Hold:
    """A point in a reply's body where the stream waits: `reached` is set when the stream
    gets there, and it goes on once the test sets `release` (or never, if it does not)."""

    reached: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


Part = Chunk | bytes | Hold | BaseException


@dataclass
class Reply:
    """One upstream answer: a status, headers, and body parts; or an exception instead."""

    parts: list[Part] = field(default_factory=list)
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    raises: Exception | None = None  # e.g. httpx.ConnectError: no answer at all
    before: Hold | None = None  # the request has arrived; the answer waits for the test


def completion(
    *parts: Part,
    finish_reason: str = "stop",
    usage: TokenUsage | None = DEFAULT_USAGE,
) -> Reply:
    """A complete streamed answer: `parts`, the finish chunk, the usage chunk, `[DONE]`."""
    tail: list[Part] = [finish_chunk(finish_reason)]
    if usage is not None:
        tail.append(usage_chunk(usage))
    return Reply([*parts, *tail, DONE])


def text_reply(
    *pieces: str, finish_reason: str = "stop", usage: TokenUsage | None = DEFAULT_USAGE
) -> Reply:
    """A complete answer of text streamed in `pieces`."""
    return completion(*text_chunks(*pieces), finish_reason=finish_reason, usage=usage)


def calls_reply(*calls: ToolCall, usage: TokenUsage | None = DEFAULT_USAGE) -> Reply:
    """A complete answer in which the model makes `calls` (finish reason `tool_calls`)."""
    return completion(*call_chunks(*calls), finish_reason="tool_calls", usage=usage)


def json_reply(
    message: dict[str, Any], finish_reason: str = "stop", usage: TokenUsage | None = DEFAULT_USAGE
) -> Reply:
    """A plain JSON chat completion, as an upstream that ignores `stream: true` sends it."""
    body: dict[str, Any] = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
    }
    if usage is not None:
        body["usage"] = usage.chat()
    return Reply([json.dumps(body).encode()], headers={"content-type": "application/json"})


def cut(*parts: Part) -> Reply:
    """A stream that ends after `parts`: no finish reason, no `[DONE]`."""
    return Reply(list(parts))


def status(code: int, message: str = "overloaded", retry_after: str | None = None) -> Reply:
    """An error status with an OpenAI-style error body."""
    body = json.dumps({"error": {"message": message, "type": "server_error"}}).encode()
    headers = {"content-type": "application/json"}
    if retry_after is not None:
        headers["retry-after"] = retry_after
    return Reply([body], status=code, headers=headers)


def unreachable() -> Reply:
    return Reply(raises=httpx.ConnectError("connection refused"))


class ScriptedBody(httpx.AsyncByteStream):
    """A response body played part by part; remembers whether the client hung up."""

    def __init__(self, parts: list[Part]) -> None:
        self.parts = parts
        self.finished = False  # played to its end
        self.closed = False  # the client closed the response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            if isinstance(part, Hold):
                part.reached.set()
                await part.release.wait()
            elif isinstance(part, BaseException):
                raise part
            elif isinstance(part, bytes):
                yield part
            else:
                yield sse(part)
        self.finished = True

    async def aclose(self) -> None:
        self.closed = True


class ScriptedUpstream:
    """The upstream: answers each request with the next scripted reply, or by `responder`.

    `requests` holds every request body received, decoded; `bodies` every body served. A
    request past the end of the script gets a 400 naming it, so a test fails visibly.

    Besides completions it answers what Ferry asks of a model server: `GET /models` lists
    `models`, and `POST /tokenize` (at the root, as vLLM serves it) answers with the count
    `tokenizer` gives for the request's body, or 404 without one, as an upstream that has no
    such endpoint. `questions` holds those requests: (path, decoded body or None).
    """

    def __init__(self, *replies: Reply, responder: Callable[[dict[str, Any]], Reply] | None = None):
        self.replies: deque[Reply] = deque(replies)
        self.responder = responder
        self.requests: list[dict[str, Any]] = []
        self.bodies: list[ScriptedBody] = []
        self.models: list[dict[str, Any]] = []
        self.tokenizer: Callable[[dict[str, Any]], int] | None = None
        self.questions: list[tuple[str, dict[str, Any] | None]] = []

    def then(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def _answer_question(self, request: httpx.Request) -> httpx.Response | None:
        """The answer to `/models` or `/tokenize`; None for any other request."""
        path = request.url.path
        if path == "/v1/models" and request.method == "GET":
            self.questions.append((path, None))
            return httpx.Response(200, json={"object": "list", "data": self.models})
        if path == "/tokenize" and request.method == "POST":
            body = json.loads(request.content)
            self.questions.append((path, body))
            if self.tokenizer is None:
                return httpx.Response(404, json={"detail": "Not Found"})
            return httpx.Response(200, json={"count": self.tokenizer(body)})
        return None

    async def handler(self, request: httpx.Request) -> httpx.Response:
        answered = self._answer_question(request)
        if answered is not None:
            return answered
        assert request.method == "POST"
        assert str(request.url) == f"{BASE_URL}/chat/completions"
        body = json.loads(request.content)
        self.requests.append(body)
        if self.replies:
            reply = self.replies.popleft()
        elif self.responder is not None:
            reply = self.responder(body)
        else:
            reply = status(400, f"unscripted request #{len(self.requests)}")
        if reply.before is not None:
            reply.before.reached.set()
            await reply.before.release.wait()
        if reply.raises is not None:
            raise reply.raises
        scripted = ScriptedBody(reply.parts)
        self.bodies.append(scripted)
        headers = {"content-type": "text/event-stream", **reply.headers}
        return httpx.Response(reply.status, headers=headers, stream=scripted)


def last_message(body: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = body["messages"][-1]
    return message
