"""The client of the chat-completions upstream: one pooled httpx client per process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson

from app.config import Settings
from app.engine.chat.measured_try import MeasuredTry
from app.shapes import JsonObject, UpstreamRefusal

log = logging.getLogger(__name__)

#: One decoded `data:` line of a streamed chat completion.
Chunk = dict[str, Any]

# Statuses that say "not now" rather than "not this request": worth another try (all 5xx too).
_RETRYABLE_STATUSES = frozenset({408, 429})
# Transport errors that no retry can fix: a malformed URL or a request httpx refuses to send.
_PERMANENT_TRANSPORT_ERRORS = (httpx.UnsupportedProtocol, httpx.LocalProtocolError)
# Bounds the backoff exponent so a huge `upstream_max_attempts` cannot overflow a float.
_MAX_BACKOFF_EXPONENT = 32
# The upstream rejected Ferry's own key: the server is misconfigured, not the request wrong.
_CREDENTIAL_STATUSES = frozenset({401, 403})
AUTH_FAILED_CODE = "upstream_auth_failed"
# Longest piece of an error body that is not JSON kept as its message.
_MAX_TEXT_DETAIL_CHARS = 300


class UpstreamError(Exception):
    """The upstream refused the request, broke the stream, or could not be reached.

    `refusal` is the upstream's own answer when it answered with an error status.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str = "upstream_error",
        refusal: UpstreamRefusal | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.refusal = refusal


def _upstream_detail(body: bytes) -> tuple[str | None, str | None, str | None]:
    """(message, code, param) of an error body in the shapes upstreams use: OpenAI's
    `{"error": {...}}` or `{"error": "..."}`, vLLM's top-level `message`, FastAPI's `detail`;
    a body that is not JSON is its own message."""
    try:
        detail = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()[:_MAX_TEXT_DETAIL_CHARS]
        return text or None, None, None
    if not isinstance(detail, dict):
        return None, None, None
    error = detail.get("error")
    if isinstance(error, str):
        return error, None, None
    fields = error if isinstance(error, dict) else detail
    message = fields.get("message", detail.get("detail"))
    return _text(message), _text(fields.get("code")), _text(fields.get("param"))


def _text(value: Any) -> str | None:
    # Upstreams put numbers (vLLM's `code: 404`) and objects where OpenAI has strings.
    return value if isinstance(value, str) and value else None


def _credentials_refused(status: int, retry_after: float | None) -> UpstreamRefusal:
    # Never the upstream's words: they may quote the key it was given.
    message = (
        f"The upstream rejected Ferry's credentials (HTTP {status}); the server's "
        "UPSTREAM_API_KEY needs fixing, not the request."
    )
    return UpstreamRefusal(
        status=status, message=message, code=AUTH_FAILED_CODE, param=None, retry_after_s=retry_after
    )


class UpstreamClient:
    def __init__(
        self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        """`transport` replaces the network, e.g. an `httpx.MockTransport` in unit tests."""
        self.base_url = settings.upstream_base_url
        self._max_attempts = settings.upstream_max_attempts
        self._backoff_base_s = settings.upstream_backoff_base_s
        self._backoff_max_s = settings.upstream_backoff_max_s
        headers = {"Accept": "text/event-stream"}
        if settings.upstream_api_key:
            headers["Authorization"] = f"Bearer {settings.upstream_api_key}"
        self._http = httpx.AsyncClient(
            headers=headers,
            # The read timeout bounds the silence between two chunks, not the whole stream.
            timeout=httpx.Timeout(
                connect=settings.upstream_connect_timeout_s,
                read=settings.upstream_timeout_s,
                write=settings.upstream_connect_timeout_s,
                pool=settings.upstream_connect_timeout_s,
            ),
            limits=httpx.Limits(
                max_connections=settings.upstream_max_connections,
                max_keepalive_connections=settings.upstream_keepalive_connections,
            ),
            transport=transport,
        )
        self._quick_timeout = httpx.Timeout(settings.upstream_connect_timeout_s)
        self._keepalive = settings.upstream_keepalive_connections
        self._streams_open = 0

    async def aclose(self) -> None:
        await self._http.aclose()

    async def stream_chat(self, body: JsonObject) -> AsyncGenerator[Chunk]:
        """POST a streaming chat completion and yield each decoded chunk.

        Ends normally at `[DONE]` or the end of the body; raises `UpstreamError` for a
        non-2xx status, an error object inside the stream, or a transport failure. An upstream
        that answers with a plain JSON completion instead of a stream gives one chunk that
        holds all of it.

        A failure before the first chunk (connection error, 408, 429, 5xx) is retried, up to
        `upstream_max_attempts` tries in all. After a chunk has been yielded it never is: the
        caller has already shown those tokens, and a second try could not continue them.
        """
        url = f"{self.base_url}/chat/completions"
        attempt = 1
        while True:
            this_try = MeasuredTry()
            try:
                # aclosing: when our caller hangs up mid-stream, the try's request is closed
                # at once, not whenever the abandoned inner generator gets collected.
                async with contextlib.aclosing(self._stream_once(url, body)) as chunks:
                    async for chunk in chunks:
                        this_try.saw(chunk)
                        yield chunk
                this_try.ended()
                return
            except _RetryableError as exc:
                if this_try.yielded or attempt >= self._max_attempts:
                    this_try.failed(exc.status_code)
                    raise _final_error(exc, attempt, this_try.yielded) from exc
                this_try.record("retried")
                delay = self._retry_delay(attempt, exc.retry_after)
                _log_retry(exc, attempt, delay)
                await asyncio.sleep(delay)
            except UpstreamError as exc:
                this_try.failed(exc.status_code)
                if this_try.yielded or attempt == 1:
                    raise
                raise _final_error(exc, attempt, this_try.yielded) from exc
            attempt += 1

    async def _stream_once(self, url: str, body: JsonObject) -> AsyncGenerator[Chunk]:
        """One try: the chunks of one upstream request; `_RetryableError` if worth another."""
        self._streams_open += 1
        try:
            async with self._http.stream("POST", url, json=body) as response:
                if response.status_code >= 400:
                    raise await _status_error(response)
                if _is_json(response):
                    whole = _completion_as_chunk(await response.aread())
                    if whole is not None:
                        yield whole
                    return
                lines = _sse_lines(response)
                async for line in lines:
                    chunk = _decode_sse_line(line)
                    if chunk is None:
                        continue
                    if chunk is _DONE:
                        if self._streams_open <= self._keepalive:
                            await _read_to_the_end(lines)
                        return
                    _raise_if_error(chunk, "upstream error mid-stream")
                    yield chunk
        except httpx.TimeoutException as exc:
            raise _RetryableError(
                f"upstream timed out ({type(exc).__name__})", code="upstream_timeout"
            ) from exc
        except _PERMANENT_TRANSPORT_ERRORS as exc:
            raise UpstreamError(f"upstream connection failed: {exc!r}") from exc
        except httpx.TransportError as exc:
            raise _RetryableError(f"upstream connection failed: {exc!r}") from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"upstream connection failed: {exc!r}") from exc
        finally:
            self._streams_open -= 1

    @property
    def tokenize_url(self) -> str:
        """vLLM serves `/tokenize` at its root, beside `/v1`, not under it."""
        return f"{self.base_url.removesuffix('/v1')}/tokenize"

    async def tokenize(self, body: JsonObject) -> JsonObject:
        """The upstream's `/tokenize` answer to `body` (vLLM: `{"count", ...}`); one try."""
        return await self._json_once("POST", self.tokenize_url, body)

    async def list_models(self) -> JsonObject:
        """The upstream's `GET {base}/models` list; one try."""
        return await self._json_once("GET", f"{self.base_url}/models")

    async def _json_once(self, method: str, url: str, body: JsonObject | None = None) -> JsonObject:
        """One request answered with a JSON object, within the connect timeout (these are
        quick questions, not generations); `UpstreamError` for any failure, with the status
        when the upstream answered with an error status."""
        try:
            response = await self._http.request(
                method,
                url,
                json=body,
                headers={"Accept": "application/json"},
                timeout=self._quick_timeout,
            )
        except httpx.HTTPError as exc:
            raise UpstreamError(f"upstream connection failed: {exc!r}") from exc
        if response.status_code >= 400:
            raise UpstreamError(
                f"upstream returned {response.status_code}", status_code=response.status_code
            )
        try:
            payload = response.json()
        except ValueError:
            raise UpstreamError("upstream sent a body that is not JSON") from None
        if not isinstance(payload, dict):
            raise UpstreamError("upstream sent JSON that is not an object")
        return payload

    def _retry_delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait after failed try number `attempt`, never past the configured cap."""
        if retry_after is not None:
            # The upstream said when it will be ready; trust it, but only up to the cap.
            return min(retry_after, self._backoff_max_s)
        exponent = min(attempt - 1, _MAX_BACKOFF_EXPONENT)
        ceiling = min(self._backoff_base_s * 2**exponent, self._backoff_max_s)
        # Full jitter: many turns failing together must not all come back at the same moment.
        return random.uniform(0, ceiling)


class _RetryableError(UpstreamError):
    """A failure another try may not repeat; `retry_after` is the upstream's own hint."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str = "upstream_error",
        retry_after: float | None = None,
        refusal: UpstreamRefusal | None = None,
    ):
        super().__init__(message, status_code=status_code, code=code, refusal=refusal)
        self.retry_after = retry_after


async def _status_error(response: httpx.Response) -> UpstreamError:
    """The error for a non-2xx response: retryable for 408, 429 and 5xx, final otherwise."""
    raw = await response.aread()
    status = response.status_code
    retry_after = _parse_retry_after(response.headers.get("retry-after"))
    if status in _CREDENTIAL_STATUSES:
        refusal = _credentials_refused(status, retry_after)
        return UpstreamError(
            refusal["message"], status_code=status, code=AUTH_FAILED_CODE, refusal=refusal
        )
    said, code, param = _upstream_detail(raw)
    message = f"upstream returned {status}: {said}" if said else f"upstream returned {status}"
    refusal = UpstreamRefusal(
        status=status,
        message=said or message,
        code=code,
        param=param,
        retry_after_s=retry_after,
    )
    if status in _RETRYABLE_STATUSES or status >= 500:
        return _RetryableError(
            message, status_code=status, retry_after=retry_after, refusal=refusal
        )
    return UpstreamError(message, status_code=status, refusal=refusal)


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (delay-seconds or an HTTP date); None if unusable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)  # HTTP dates are GMT even when marked "-0000"
        seconds = when.timestamp() - time.time()
    # "nan" and "inf" parse as floats too; neither is a delay.
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _final_error(exc: UpstreamError, attempts: int, yielded: bool) -> UpstreamError:
    """The error to raise: a plain `UpstreamError`, saying how many tries it took if several."""
    message = exc.message
    if attempts > 1 and not yielded:
        message = f"{message} (after {attempts} attempts)"
    return UpstreamError(message, status_code=exc.status_code, code=exc.code, refusal=exc.refusal)


def _log_retry(exc: UpstreamError, attempt: int, delay: float) -> None:
    # The error class, not the message or headers: those may echo request details.
    cause = exc.__cause__
    log.warning(
        "upstream try failed before the first token; retrying",
        extra={
            "attempt": attempt,
            "status": exc.status_code,
            "error": type(cause).__name__ if cause is not None else None,
            "delay_s": round(delay, 3),
        },
    )


_DONE: Chunk = {}


async def _sse_lines(response: httpx.Response) -> AsyncIterator[bytes]:
    """The lines of an SSE body, as bytes, without their `\n` or `\r\n`.

    Split here rather than with httpx's `aiter_lines`, which decodes every block to text and
    searches it for every kind of line break first: the hot path of a stream. SSE also allows
    a lone `\r` as a line break, which no chat-completions server sends.
    """
    pending = b""
    async for block in response.aiter_bytes():
        lines = (pending + block).split(b"\n") if pending else block.split(b"\n")
        pending = lines.pop()
        for line in lines:
            yield line
    if pending:
        yield pending


async def _read_to_the_end(lines: AsyncIterator[bytes]) -> None:
    """The rest of a body after its `[DONE]` (normally just its last chunk), read as the
    openai SDK reads it: a response left unread closes its connection, and the next request
    would pay for a new one (≈ 1 ms before its first token, on loopback).

    Done only while few streams are open (UPSTREAM_KEEPALIVE_CONNECTIONS): httpx's pool does
    work for every idle connection on every request: with 50 streams relaying, keeping up to
    32 idle cost the API a fifth more CPU than opening new connections."""
    async for _ in lines:
        pass


def _decode_sse_line(line: bytes) -> Chunk | None:
    """One SSE line: a chunk for `data: {...}`, `_DONE` for `data: [DONE]`, else None."""
    if not line.startswith(b"data:"):
        return None  # comments, `event:` lines and blank separators carry nothing for us
    data = line[5:].strip()
    if not data:
        return None
    if data == b"[DONE]":
        return _DONE
    try:
        # orjson also refuses lone UTF-16 surrogates, which no later step could encode.
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        chunk = _decode_with_constants(data.decode(errors="replace"))
    return chunk if isinstance(chunk, dict) else None


# Python-based servers may write a -inf logprob as `-Infinity` (not JSON); vLLM itself
# sends -9999.0 for it, so that is what such a value becomes.
_NON_FINITE = {"-Infinity": -9999.0, "Infinity": 9999.0, "NaN": -9999.0}


def _decode_with_constants(data: str) -> Any:
    """A chunk orjson refused: accepted only if the reason was a non-finite number."""
    try:
        chunk = json.loads(data, parse_constant=_NON_FINITE.__getitem__)
        orjson.dumps(chunk)  # a lone surrogate would fail here, and at every later step
    except (ValueError, TypeError) as exc:
        raise UpstreamError(f"upstream sent a malformed chunk: {data[:200]!r}") from exc
    return chunk


def _raise_if_error(payload: JsonObject, what: str) -> None:
    """An `{"error": ...}` object in place of a completion is the upstream failing."""
    if "error" in payload and not payload.get("choices"):
        err = payload["error"]
        message = err.get("message") if isinstance(err, dict) else str(err)
        raise UpstreamError(f"{what}: {message}")


def _is_json(response: httpx.Response) -> bool:
    media_type: str = response.headers.get("content-type", "").split(";")[0]
    return media_type.strip().lower() == "application/json"


def _completion_as_chunk(raw: bytes) -> Chunk | None:
    """A whole chat completion as the one chunk a stream of it would add up to: each
    choice's `message` as its `delta` (tool calls numbered by position, as a stream numbers
    them), with its `finish_reason`, and the usage. None for an empty body."""
    if not raw.strip():
        return None
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise UpstreamError(f"upstream sent a malformed completion: {raw[:200]!r}") from exc
    if not isinstance(body, dict):
        raise UpstreamError(f"upstream sent a malformed completion: {raw[:200]!r}")
    _raise_if_error(body, "upstream error")
    choices = []
    for choice in body.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        delta = dict(choice.get("message") or {})
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            delta["tool_calls"] = [{**call, "index": n} for n, call in enumerate(calls)]
        choices.append(
            {
                "index": choice.get("index", 0),
                "delta": delta,
                "finish_reason": choice.get("finish_reason"),
            }
        )
    return {**body, "object": "chat.completion.chunk", "choices": choices}
