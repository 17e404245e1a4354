"""The servers behind the registered HTTP tools, as an `httpx.MockTransport` handler.

    host = ToolHost()
    runner = HttpToolRunner(transport=httpx.MockTransport(host.handler))

Every tool of `REGISTRY` has a default answer; a test replaces one with `host.answer(name,
handler)`, e.g. to hold a call until it says so. `host.calls` records every call received,
with its headers, so a test can check the `Idempotency-Key` each call carried.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from app.engine.tools.registry import HttpTool, ToolRegistry

TOOLS_URL = "http://tools.test"


def _tool(name: str, path: str, *, retry_safe: bool = True, timeout_s: float = 5.0) -> HttpTool:
    return HttpTool(
        name=name,
        description=f"The {name} tool",
        parameters={"type": "object", "properties": {"city": {"type": "string"}}},
        url=f"{TOOLS_URL}{path}",
        timeout_s=timeout_s,
        headers={"Authorization": "Bearer tool-secret"},
        retry_safe=retry_safe,
    )


REGISTRY = ToolRegistry(
    {
        tool.name: tool
        for tool in (
            _tool("lookup_weather", "/weather"),
            _tool("current_time", "/time"),
            _tool("pay", "/pay"),
            _tool("pay_unsafe", "/pay-unsafe", retry_safe=False),
            _tool("broken_tool", "/broken"),
        )
    }
)


@dataclass(frozen=True)
class ToolCallSeen:
    """A call as the tool's server received it: the arguments posted, and the headers."""

    tool: str
    arguments: Any
    headers: dict[str, str]

    @property
    def idempotency_key(self) -> str:
        return self.headers["idempotency-key"]


ToolHandler = Callable[[ToolCallSeen], Awaitable[httpx.Response]]


async def _weather(call: ToolCallSeen) -> httpx.Response:
    return httpx.Response(200, json={"city": call.arguments.get("city"), "temp_c": 21})


async def _time(call: ToolCallSeen) -> httpx.Response:
    return httpx.Response(200, text="12:00")


async def _pay(call: ToolCallSeen) -> httpx.Response:
    return httpx.Response(200, json={"paid": call.arguments.get("n")})


async def _broken(call: ToolCallSeen) -> httpx.Response:
    return httpx.Response(500, text="kaput")


@dataclass
class ToolHost:
    """Answers each registered tool's URL with its handler, recording every call."""

    handlers: dict[str, ToolHandler] = field(
        default_factory=lambda: {
            "lookup_weather": _weather,
            "current_time": _time,
            "pay": _pay,
            "pay_unsafe": _pay,
            "broken_tool": _broken,
        }
    )
    calls: list[ToolCallSeen] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)  # set at each call

    def answer(self, tool: str, handler: ToolHandler) -> None:
        self.handlers[tool] = handler

    def calls_to(self, tool: str) -> list[ToolCallSeen]:
        return [call for call in self.calls if call.tool == tool]

    async def handler(self, request: httpx.Request) -> httpx.Response:
        assert request.method == "POST"
        by_url = {tool.url: tool for tool in REGISTRY.tools.values()}
        tool = by_url.get(str(request.url))
        assert tool is not None, f"no registered tool at {request.url}"
        seen = ToolCallSeen(tool.name, json.loads(request.content), dict(request.headers))
        self.calls.append(seen)
        self.arrived.set()
        return await self.handlers[tool.name](seen)
