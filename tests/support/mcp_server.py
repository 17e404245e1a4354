"""A real MCP server (streamable HTTP, official `mcp` 2.x SDK) for the tests.

It records every tool call it receives, like `tool_server.py` beside it, so tests can assert
the server saw each call exactly once. Start it from a fixture with:

    with run_mcp_server() as mcp_server:
        ...  # mcp_server.url is the MCP endpoint; mcp_server.calls what it received

which is `servers.serve(build_mcp_app(server), ready_path=HEALTH_PATH)` underneath.
serve's default lifespan="on" is required: the SDK's session manager runs in the Starlette
lifespan, and the MCP endpoint answers nothing without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import (
    CallToolResult,
    ImageContent,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
    ToolAnnotations,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from tests.support.servers import serve

MCP_PATH = "/mcp"
HEALTH_PATH = "/health"
TEST_HEADER = "X-Test-Header"
TOOL_NAMES = frozenset({"add", "echo", "fail", "secret_header", "sleep", "mixed", "structured"})
# Upper bound for the `sleep` tool, so an abandoned slow call cannot stall server shutdown.
MAX_SLEEP_S = 5.0
PIXEL_PNG_B64 = "iVBORw0KGgo="


@dataclass
class McpCall:
    name: str
    arguments: dict[str, Any]


@dataclass
class McpTestServer:
    """Records tool calls; `page_size` makes tools/list paginate with cursors "0", "2", ..."""

    page_size: int | None = None
    calls: list[McpCall] = field(default_factory=list)
    # The cursor of every tools/list request (None for the first page).
    list_cursors: list[str | None] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def record(self, name: str, arguments: dict[str, Any]) -> None:
        # Tools run on uvicorn's thread (sync ones in its worker threads); tests read from the
        # main thread.
        with self.lock:
            self.calls.append(McpCall(name=name, arguments=arguments))

    def calls_matching(self, name: str, arguments: dict[str, Any]) -> list[McpCall]:
        with self.lock:
            return [c for c in self.calls if c.name == name and c.arguments == arguments]

    def cursors(self) -> list[str | None]:
        with self.lock:
            return list(self.list_cursors)


class _PagingMCPServer(MCPServer):
    """MCPServer lists every tool in one page; this one pages, to exercise client cursors."""

    def __init__(self, recorder: McpTestServer) -> None:
        super().__init__("ferry-test-mcp", log_level="WARNING")
        self._recorder = recorder

    async def _handle_list_tools(
        self, ctx: Any, params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        cursor = params.cursor if params is not None else None
        with self._recorder.lock:
            self._recorder.list_cursors.append(cursor)
        tools = await self.list_tools()
        size = self._recorder.page_size
        if size is None:
            return ListToolsResult(tools=tools)
        start = int(cursor or 0)
        end = start + size
        return ListToolsResult(
            tools=tools[start:end], next_cursor=str(end) if end < len(tools) else None
        )


def build_mcp_app(recorder: McpTestServer) -> Starlette:
    """The MCP endpoint at MCP_PATH plus a plain GET HEALTH_PATH for readiness checks.

    Build a new app per server run: the SDK's session manager can only be run once.
    """
    mcp = _PagingMCPServer(recorder)

    # `add` and `echo` change nothing, and say so: what a `read_only` filter selects.
    @mcp.tool(description="Add two integers", annotations=ToolAnnotations(readOnlyHint=True))
    def add(a: int, b: int) -> int:
        recorder.record("add", {"a": a, "b": b})
        return a + b

    @mcp.tool(description="Echo the text back", annotations=ToolAnnotations(readOnlyHint=True))
    def echo(text: str) -> str:
        recorder.record("echo", {"text": text})
        return text

    @mcp.tool(description="Always fails with the given reason")
    def fail(reason: str) -> str:
        recorder.record("fail", {"reason": reason})
        # A raised ToolError becomes a result with isError true and the message in its text;
        # any other exception would become a generic "Error executing tool fail".
        raise ToolError(reason)

    @mcp.tool(description="The value of the X-Test-Header request header")
    def secret_header(ctx: Context) -> str:
        recorder.record("secret_header", {})
        headers = ctx.headers or {}
        return headers.get(TEST_HEADER.lower()) or headers.get(TEST_HEADER) or "<missing>"

    @mcp.tool(description="Sleep, then answer (for client timeouts)")
    async def sleep(seconds: float) -> str:
        recorder.record("sleep", {"seconds": seconds})
        await asyncio.sleep(min(seconds, MAX_SLEEP_S))
        return "slept"

    @mcp.tool(description="Two text blocks around an image block")
    def mixed() -> CallToolResult:
        recorder.record("mixed", {})
        return CallToolResult(
            content=[
                TextContent(type="text", text="before"),
                ImageContent(type="image", data=PIXEL_PNG_B64, mime_type="image/png"),
                TextContent(type="text", text="after"),
            ]
        )

    @mcp.tool(description="Structured content and no content blocks")
    def structured() -> CallToolResult:
        recorder.record("structured", {})
        return CallToolResult(content=[], structured_content={"answer": 42, "unit": "none"})

    @mcp.custom_route(HEALTH_PATH, methods=["GET"])
    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    return mcp.streamable_http_app(streamable_http_path=MCP_PATH)


@contextlib.contextmanager
def run_mcp_server(*, page_size: int | None = None) -> Iterator[McpTestServer]:
    """A running test MCP server on loopback; `.url` is its MCP endpoint."""
    server = McpTestServer(page_size=page_size)
    with serve(build_mcp_app(server), ready_path=HEALTH_PATH, lifespan="on") as base_url:
        server.url = f"{base_url}{MCP_PATH}"
        yield server
