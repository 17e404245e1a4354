"""A real HTTP tool server for the tests, recording every call it receives."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

SLOW_TOOL_SLEEP_S = 2.0


@dataclass
class ToolCall:
    tool: str
    idempotency_key: str | None
    response_id: str | None
    arguments: Any


@dataclass
class ToolServer:
    calls: list[ToolCall] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    base_url: str = ""

    def calls_for(self, response_id: str) -> list[ToolCall]:
        with self.lock:
            return [c for c in self.calls if c.response_id == response_id]

    def app(self) -> Starlette:
        async def handle(request: Request) -> Response:
            tool = request.path_params["tool"]
            arguments = json.loads(await request.body())
            with self.lock:
                self.calls.append(
                    ToolCall(
                        tool=tool,
                        idempotency_key=request.headers.get("idempotency-key"),
                        response_id=request.headers.get("x-ferry-response-id"),
                        arguments=arguments,
                    )
                )
            if tool == "weather":
                return JSONResponse({"city": arguments.get("city"), "temp_c": 21})
            if tool == "time":
                return PlainTextResponse("12:00")
            if tool == "broken":
                return PlainTextResponse("kaput", status_code=500)
            if tool == "slow":
                await asyncio.sleep(SLOW_TOOL_SLEEP_S)  # longer than its configured timeout
                return PlainTextResponse("too late")
            return PlainTextResponse("no such tool", status_code=404)

        return Starlette(routes=[Route("/tools/{tool}", handle, methods=["POST"])])


def tools_toml(base_url: str) -> str:
    """The TOOLS_FILE registering the server's tools (names distinct from client tools)."""
    return f"""
[[tools]]
name = "lookup_weather"
description = "Current weather for a city"
url = "{base_url}/tools/weather"
timeout_s = 5
parameters = {{ type = "object", properties = {{ city = {{ type = "string" }} }} }}
headers = {{ X-Test-Token = "${{FERRY_TEST_TOOL_TOKEN}}" }}

[[tools]]
name = "current_time"
description = "The time"
url = "{base_url}/tools/time"

[[tools]]
name = "broken_tool"
description = "Always fails"
url = "{base_url}/tools/broken"

[[tools]]
name = "slow_tool"
description = "Never answers in time"
url = "{base_url}/tools/slow"
timeout_s = 0.3
"""
