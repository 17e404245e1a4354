"""One MCP server as the engine's MCP client sees it, for the unit tier.

The MCP client has no transport to replace (see the module docstring of
`app.engine.tools.mcp_client`), so its two entry points are replaced with this fake server's
(the `mcp` fixture of a test module does it with `monkeypatch`). `calls` records every call
received, so a test can check a call was made exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from app.engine.tools import mcp_client
from app.engine.tools.mcp_client import McpError, McpTool

SERVER_URL = "https://mcp.test/mcp"


@dataclass
class FakeMcp:
    """One MCP server, as `list_mcp_tools` and `call_mcp_tool` see it."""

    tools: list[McpTool] = field(
        default_factory=lambda: [
            McpTool("add", "Adds", {"type": "object"}, {"readOnlyHint": True}),
            McpTool("fail", "Fails", {"type": "object"}, None),
            McpTool("hidden", "Not allowed", {"type": "object"}, None),
        ]
    )
    listing_error: str | None = None
    listings: int = 0
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeMcp:
        monkeypatch.setattr(mcp_client, "list_mcp_tools", self.list_tools)
        monkeypatch.setattr(mcp_client, "call_mcp_tool", self.call_tool)
        return self

    async def list_tools(
        self, server_url: str, headers: dict[str, str] | None, *, timeout_s: float
    ) -> list[McpTool]:
        assert server_url == SERVER_URL
        self.listings += 1
        if self.listing_error is not None:
            raise McpError(self.listing_error)
        return self.tools

    async def call_tool(
        self,
        server_url: str,
        headers: dict[str, str] | None,
        name: str,
        arguments: dict[str, Any],
        *,
        timeout_s: float,
    ) -> tuple[str | None, str | None]:
        self.calls.append((name, arguments))
        if name == "fail":
            return None, f"refused: {arguments.get('reason')}"
        return str(arguments["a"] + arguments["b"]), None
