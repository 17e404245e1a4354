"""The client of the chat-completions upstream: one pooled httpx client per process."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator
from typing import Any

import httpx

from app.config import Settings

log = logging.getLogger(__name__)


class UpstreamError(Exception):
    """The upstream refused the request, broke the stream, or could not be reached."""

    def __init__(
        self, message: str, *, status_code: int | None = None, code: str = "upstream_error"
    ):
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code


def _error_message(body: bytes, status_code: int) -> str:
    try:
        detail = json.loads(body)
        if isinstance(detail, dict) and isinstance(detail.get("error"), dict):
            return f"upstream returned {status_code}: {detail['error'].get('message')}"
        if isinstance(detail, dict) and isinstance(detail.get("error"), str):
            return f"upstream returned {status_code}: {detail['error']}"
    except ValueError:
        pass
    text = body.decode("utf-8", "replace").strip()[:300]
    return (
        f"upstream returned {status_code}: {text}" if text else f"upstream returned {status_code}"
    )


class UpstreamClient:
    def __init__(self, settings: Settings) -> None:
        self.base_url = settings.upstream_base_url
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
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def stream_chat(self, body: dict[str, Any]) -> AsyncGenerator[dict[str, Any]]:
        """POST a streaming chat completion and yield each decoded chunk.

        Ends normally at `[DONE]` or the end of the body; raises `UpstreamError` for a
        non-2xx status, an error object inside the stream, or a transport failure.
        """
        url = f"{self.base_url}/chat/completions"
        try:
            async with self._http.stream("POST", url, json=body) as response:
                if response.status_code >= 400:
                    raw = await response.aread()
                    raise UpstreamError(
                        _error_message(raw, response.status_code),
                        status_code=response.status_code,
                    )
                async for line in response.aiter_lines():
                    chunk = _decode_sse_line(line)
                    if chunk is None:
                        continue
                    if chunk is _DONE:
                        return
                    if "error" in chunk and not chunk.get("choices"):
                        err = chunk["error"]
                        message = err.get("message") if isinstance(err, dict) else str(err)
                        raise UpstreamError(f"upstream error mid-stream: {message}")
                    yield chunk
        except httpx.TimeoutException as exc:
            raise UpstreamError(
                f"upstream timed out ({type(exc).__name__})", code="upstream_timeout"
            ) from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"upstream connection failed: {exc!r}") from exc


_DONE: dict[str, Any] = {}


def _decode_sse_line(line: str) -> dict[str, Any] | None:
    """One SSE line: a chunk for `data: {...}`, `_DONE` for `data: [DONE]`, else None."""
    if not line.startswith("data:"):
        return None  # comments, `event:` lines and blank separators carry nothing for us
    data = line[5:].strip()
    if not data:
        return None
    if data == "[DONE]":
        return _DONE
    try:
        chunk = json.loads(data)
    except ValueError as exc:
        raise UpstreamError(f"upstream sent a malformed chunk: {data[:200]!r}") from exc
    return chunk if isinstance(chunk, dict) else None
