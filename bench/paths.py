"""The ways a request travels in the benchmark, each answering "how did this one go?".

The bare path calls the mock upstream's `/v1/chat/completions`; Ferry's paths call
`/v1/responses` in front of that same upstream (inline stream, blocking, background stream,
background create). Both ask for the same answer: `words` words, one token each.

Two clients call them:

- the lean client (lean_client.py) counts tokens by a byte marker: under load, the client
  must not be what limits the rate;
- the reading client (httpx, `aiter_lines`, `json.loads` of every event) is what an
  application does with a stream: it measures the rate at which one reader gets tokens.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from bench.lean_client import Connection, Reply

MODEL = "bench"
BARE_TOKEN = b'"content":"'
BARE_END = b"data: [DONE]"
FERRY_TOKEN = b"event: response.output_text.delta\n"
FERRY_END = b"event: response.completed\n"
FERRY_COMPLETED = b'"status":"completed"'
FERRY_QUEUED = b'"status":"queued"'
RESPONSE_ID = re.compile(rb'"id":"(resp_[^"]+)"')

LEAN_CLIENT = (
    "lean client: raw asyncio HTTP/1.1 (bench/lean_client.py), keep-alive, tokens counted "
    "by a byte marker, no JSON decoding"
)
READING_CLIENT = "reading client: httpx, aiter_lines and json.loads of every SSE event"


def question(words: int) -> str:
    """The prompt the mock upstream answers with `words` words."""
    return f"Answer in {words} words."


def bare_body(words: int, *, stream: bool) -> bytes:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": question(words)}],
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body).encode()


def ferry_body(words: int, *, stream: bool, background: bool = False) -> bytes:
    body = {"model": MODEL, "input": question(words), "stream": stream, "background": background}
    return json.dumps(body).encode()


@dataclass
class Outcome:
    """How one request went: "ok", "refused" (429) or "failed: <why>"."""

    kind: str
    tokens: int = 0
    ttft_s: float | None = None
    total_s: float = 0.0
    response_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


def _judge(reply: Reply, expected_tokens: int | None) -> Outcome:
    if reply.status == 429:
        return Outcome("refused", total_s=reply.total_s)
    if reply.status != 200:
        return Outcome(f"failed: HTTP {reply.status}", total_s=reply.total_s)
    # Markers after the first must each show up; with no token count to check, all must.
    required = reply.counts if expected_tokens is None else reply.counts[1:]
    if not all(required):
        return Outcome("failed: the reply is not a finished answer", total_s=reply.total_s)
    tokens = reply.counts[0] if reply.counts else 0
    if expected_tokens is not None and tokens != expected_tokens:
        return Outcome(
            f"failed: {tokens} of {expected_tokens} tokens", tokens, total_s=reply.total_s
        )
    found = RESPONSE_ID.search(reply.body)
    response_id = found.group(1).decode() if found else None
    return Outcome("ok", tokens, reply.first_marker_s, reply.total_s, response_id)


# A path as the lean client takes it: one request on a connection, judged.
LeanCall = Callable[[Connection, int], Awaitable[Outcome]]


async def bare_stream(conn: Connection, words: int) -> Outcome:
    reply = await conn.request(
        "POST",
        "/v1/chat/completions",
        bare_body(words, stream=True),
        markers=(BARE_TOKEN, BARE_END),
    )
    return _judge(reply, words)


async def bare_blocking(conn: Connection, words: int) -> Outcome:
    body = bare_body(words, stream=False)
    reply = await conn.request("POST", "/v1/chat/completions", body, markers=(b'"choices"',))
    return _judge(reply, None)


async def ferry_stream(conn: Connection, words: int) -> Outcome:
    body = ferry_body(words, stream=True)
    reply = await conn.request("POST", "/v1/responses", body, markers=(FERRY_TOKEN, FERRY_END))
    return _judge(reply, words)


async def ferry_blocking(conn: Connection, words: int) -> Outcome:
    body = ferry_body(words, stream=False)
    reply = await conn.request("POST", "/v1/responses", body, markers=(FERRY_COMPLETED,))
    return _judge(reply, None)


async def ferry_background_stream(conn: Connection, words: int) -> Outcome:
    """A background stream read to its end; the body is kept for the response id."""
    body = ferry_body(words, stream=True, background=True)
    reply = await conn.request(
        "POST", "/v1/responses", body, markers=(FERRY_TOKEN, FERRY_END), keep_body=True
    )
    return _judge(reply, words)


async def ferry_background_create(conn: Connection, words: int) -> Outcome:
    """Accepted (stored `queued`, a job deferred) is the whole of it."""
    body = ferry_body(words, stream=False, background=True)
    reply = await conn.request("POST", "/v1/responses", body, markers=(FERRY_QUEUED,))
    return _judge(reply, None)


@dataclass(frozen=True)
class ReadingPath:
    """A stream as an application reads it: every event decoded, tokens picked out."""

    url: str
    body: Callable[[int], bytes]
    is_token: Callable[[dict[str, Any]], bool]
    is_end: Callable[[dict[str, Any]], bool]

    async def stream(self, client: httpx.AsyncClient, words: int) -> Outcome:
        started = time.perf_counter()
        tokens, first, ended = 0, None, False
        async with client.stream("POST", self.url, content=self.body(words)) as reply:
            if reply.status_code != 200:
                await reply.aread()
                return Outcome(f"failed: HTTP {reply.status_code}")
            async for line in reply.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    ended = True
                    continue
                event = json.loads(data)
                if self.is_token(event):
                    tokens += 1
                    if first is None:
                        first = time.perf_counter() - started
                ended = ended or self.is_end(event)
        total = time.perf_counter() - started
        if not ended or tokens != words:
            return Outcome(f"failed: {tokens} of {words} tokens, ended: {ended}", tokens)
        return Outcome("ok", tokens, first, total)


def _is_chunk_token(chunk: dict[str, Any]) -> bool:
    choices = chunk.get("choices") or [{}]
    return bool(choices[0].get("delta", {}).get("content"))


def reading_bare(upstream_url: str) -> ReadingPath:
    return ReadingPath(
        f"{upstream_url}/v1/chat/completions",
        lambda words: bare_body(words, stream=True),
        _is_chunk_token,
        lambda chunk: False,  # the end is `data: [DONE]`
    )


def reading_ferry(api_url: str, *, background: bool = False) -> ReadingPath:
    return ReadingPath(
        f"{api_url}/v1/responses",
        lambda words: ferry_body(words, stream=True, background=background),
        lambda event: event.get("type") == "response.output_text.delta",
        lambda event: event.get("type") == "response.completed",
    )
