"""A chat-completions upstream that costs next to nothing per token, for measuring Ferry.

    python -m bench.mock_upstream --port 8199

`POST /v1/chat/completions` answers with as many words as the first number in the last user
message says ("Answer in 2000 words." -> 2000; 20 without a number), cut at `max_tokens`
(then `finish_reason: "length"`). With `"stream": true` it sends the chat-completions SSE
wire format, one chunk per word — the role with the first word, the finish reason in a
chunk of its own, with `stream_options.include_usage` a last chunk with the usage and no
choices (and `"usage": null` in the others), then `data: [DONE]` — as fast as the reader
takes them: no sleeps. Without it, one `chat.completion` object. `GET /v1/models` answers
readiness checks.

Cheap on purpose, so that a benchmark measures Ferry and not this: a raw asyncio HTTP/1.1
server (keep-alive, chunked responses) on uvloop, each chunk encoded once at start; per
request only the body is decoded and the usage encoded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from dataclasses import dataclass
from typing import Any

DEFAULT_WORDS = 20
WORD = "token "
MODEL = "bench"
CREATED = 1_700_000_000  # not the clock: every answer is the same
COMPLETION_ID = "chatcmpl-bench"
NUMBER = re.compile(r"\d+")

JSON = dict[str, Any]


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _http_chunk(data: bytes) -> bytes:
    """`data` as one chunk of a chunked HTTP body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def _event(chunk: JSON) -> bytes:
    """One SSE event carrying `chunk`, framed as one HTTP chunk: one write per word."""
    return _http_chunk(b"data: " + _json(chunk) + b"\n\n")


def _chunk(delta: JSON, finish_reason: str | None, with_usage: bool) -> JSON:
    chunk: JSON = {"id": COMPLETION_ID, "object": "chat.completion.chunk", "created": CREATED}
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    chunk |= {"model": MODEL, "choices": [choice]}
    if with_usage:  # OpenAI sends `usage: null` in every chunk but the last when asked
        chunk["usage"] = None
    return chunk


@dataclass(frozen=True)
class Encoded:
    """The chunks of every streamed answer, encoded once: one set with usage, one without."""

    first: bytes
    word: bytes
    stop: bytes
    length: bytes

    @classmethod
    def build(cls, with_usage: bool) -> Encoded:
        return cls(
            first=_event(_chunk({"role": "assistant", "content": WORD}, None, with_usage)),
            word=_event(_chunk({"content": WORD}, None, with_usage)),
            stop=_event(_chunk({}, "stop", with_usage)),
            length=_event(_chunk({}, "length", with_usage)),
        )


WITH_USAGE = Encoded.build(with_usage=True)
WITHOUT_USAGE = Encoded.build(with_usage=False)
DONE = _http_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


def _text_of(message: JSON) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


@dataclass(frozen=True)
class Answer:
    words: int
    finish_reason: str
    prompt_tokens: int

    @classmethod
    def to(cls, body: JSON) -> Answer:
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        asked = next((_text_of(m) for m in reversed(messages) if m.get("role") == "user"), "")
        number = NUMBER.search(asked)
        words = int(number.group()) if number else DEFAULT_WORDS
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        finish = "stop"
        if isinstance(limit, int) and 0 < limit < words:
            words, finish = limit, "length"
        return cls(max(words, 1), finish, max(1, len(asked.split())))

    def usage(self) -> JSON:
        total = self.prompt_tokens + self.words
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.words,
            "total_tokens": total,
        }


def _plain(status: str, body: bytes, content_type: bytes = b"application/json") -> bytes:
    head = b"HTTP/1.1 %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n"
    return head % (status.encode(), content_type, len(body)) + body


def _error(status: str, message: str) -> bytes:
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    return _plain(status, _json({"error": error}))


MODELS = _plain(
    "200 OK",
    _json({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "bench"}]}),
)


async def _stream(writer: asyncio.StreamWriter, answer: Answer, with_usage: bool) -> None:
    encoded = WITH_USAGE if with_usage else WITHOUT_USAGE
    writer.write(STREAM_HEAD + encoded.first)
    for _ in range(answer.words - 1):
        writer.write(encoded.word)  # a write per word, as a server generating tokens makes
        await writer.drain()
    writer.write(encoded.stop if answer.finish_reason == "stop" else encoded.length)
    if with_usage:
        last = {"id": COMPLETION_ID, "object": "chat.completion.chunk", "created": CREATED}
        last |= {"model": MODEL, "choices": [], "usage": answer.usage()}
        writer.write(_http_chunk(b"data: " + _json(last) + b"\n\n"))
    writer.write(DONE)
    await writer.drain()


def _completion(answer: Answer) -> bytes:
    message = {"role": "assistant", "content": WORD * answer.words}
    choice = {"index": 0, "message": message, "logprobs": None}
    completion = {"id": COMPLETION_ID, "object": "chat.completion", "created": CREATED}
    completion |= {"model": MODEL, "choices": [choice | {"finish_reason": answer.finish_reason}]}
    return _plain("200 OK", _json(completion | {"usage": answer.usage()}))


async def _respond(method: str, path: str, raw: bytes, writer: asyncio.StreamWriter) -> None:
    route = path.split("?", 1)[0].removeprefix("/v1")
    if method == "GET" and route == "/models":
        writer.write(MODELS)
        return
    if method != "POST" or route != "/chat/completions":
        writer.write(_error("404 Not Found", f"no route {method} {path}"))
        return
    try:
        body = json.loads(raw)
        assert isinstance(body, dict)
    except (ValueError, AssertionError):
        writer.write(_error("400 Bad Request", "the body is not a JSON object"))
        return
    answer = Answer.to(body)
    if body.get("stream") is True:
        options = body.get("stream_options")
        with_usage = isinstance(options, dict) and options.get("include_usage") is True
        await _stream(writer, answer, with_usage)
    else:
        writer.write(_completion(answer))


async def _connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Requests one after another on one connection, until the client closes it."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = head.decode("latin-1").split("\r\n")
            method, path, _ = request_line.split(" ", 2)
            headers = {}
            for line in lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip().lower()
            if "chunked" in headers.get("transfer-encoding", ""):
                writer.write(_error("411 Length Required", "send a Content-Length"))
                break
            body = await reader.readexactly(int(headers.get("content-length") or 0))
            await _respond(method, path, body, writer)
            await writer.drain()
            if headers.get("connection") == "close":
                break
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass  # the client went away: nothing to answer
    finally:
        writer.close()


async def serve(host: str, port: int) -> None:
    server = await asyncio.start_server(_connection, host, port, backlog=4096)
    print(f"mock upstream listening on http://{host}:{port}", file=sys.stderr, flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mock_upstream", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8199)
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:  # plain asyncio: slower per chunk, still correct
        asyncio.run(serve(args.host, args.port))
    else:
        uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
