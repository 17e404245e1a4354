"""Calling a registered HTTP tool: POST the arguments, and the reply is what the model sees.

A tool that fails — an error status, a timeout, no connection, arguments that are not a
JSON object — does not fail the response: the model is told `{"error": ...}` and goes on.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx

from app import metrics
from app.engine.tools.registry import HttpTool

log = logging.getLogger(__name__)

MAX_ERROR_BODY_CHARS = 500


def tool_error(message: str) -> str:
    return json.dumps({"error": message})


class HttpToolRunner:
    """One pooled HTTP client for every tool call this process makes."""

    def __init__(self, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        """`transport` replaces the network, e.g. an `httpx.MockTransport` in unit tests."""
        self._http = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=100), transport=transport
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(self, tool: HttpTool, *, call_id: str, arguments: str, response_id: str) -> str:
        """What the model is told the tool answered: its reply, or `{"error": ...}`."""
        output, ok = await self._call(tool, call_id, arguments, response_id)
        metrics.tool_call(tool.name, "ok" if ok else "error")
        return output

    async def _call(
        self, tool: HttpTool, call_id: str, arguments: str, response_id: str
    ) -> tuple[str, bool]:
        try:
            payload: Any = json.loads(arguments or "{}")
        except ValueError:
            return tool_error(f"arguments are not valid JSON: {arguments[:200]}"), False
        if not isinstance(payload, dict):
            return tool_error("arguments must be a JSON object"), False
        headers = {
            **tool.headers,
            # The same call retried after a crash carries the same key: the tool can dedupe.
            "Idempotency-Key": call_id,
            "X-Ferry-Response-Id": response_id,
        }
        try:
            reply = await self._http.post(
                tool.url, json=payload, headers=headers, timeout=tool.timeout_s
            )
        except httpx.TimeoutException:
            log.warning("tool timed out", extra={"tool": tool.name, "call_id": call_id})
            return tool_error(f"tool {tool.name} timed out after {tool.timeout_s:g}s"), False
        except httpx.HTTPError as exc:
            log.warning("tool unreachable", extra={"tool": tool.name, "call_id": call_id})
            return tool_error(f"tool {tool.name} could not be reached: {type(exc).__name__}"), False
        if not reply.is_success:
            body = reply.text[:MAX_ERROR_BODY_CHARS]
            return tool_error(f"tool {tool.name} returned HTTP {reply.status_code}: {body}"), False
        return reply.text, True
