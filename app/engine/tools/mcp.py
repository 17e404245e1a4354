"""Remote MCP servers named in a request: which may be used, and their output items.

A request's `{"type": "mcp", ...}` tools are resolved once per response: the server's tools
are listed (an `mcp_list_tools` item), offered to the model as functions, and each call the
model makes becomes an `mcp_call` item that the loop completes with the server's answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from app import ids
from app.engine.errors import RequestError
from app.shapes import Item, JsonObject

if TYPE_CHECKING:  # the mcp package is heavy to import; only MCP work loads it
    from app.engine.tools.mcp_client import McpTool


@dataclass(frozen=True)
class McpServer:
    label: str
    url: str
    headers: dict[str, str]
    allowed_tools: frozenset[str] | None  # None: all of the server's tools
    # True: only tools the server annotates `readOnlyHint`; False: only the others.
    read_only: bool | None = None

    def allows(self, tool: McpTool) -> bool:
        """Whether `allowed_tools` lets the model see (and so call) the tool: its name is
        listed, if names are given, and its read-only annotation matches, if asked."""
        if self.allowed_tools is not None and tool.name not in self.allowed_tools:
            return False
        if self.read_only is None:
            return True
        # MCP's default for an unannotated tool: it may modify its environment.
        return bool((tool.annotations or {}).get("readOnlyHint", False)) is self.read_only


def mcp_servers(request: JsonObject) -> list[McpServer]:
    """The MCP servers of a (validated) request, in the order given."""
    servers = []
    for tool in request.get("tools") or []:
        if tool.get("type") != "mcp":
            continue
        allowed = tool.get("allowed_tools")
        # Either a list of names, or a filter object with `tool_names` and/or `read_only`.
        read_only = allowed.get("read_only") if isinstance(allowed, dict) else None
        if isinstance(allowed, dict):
            allowed = allowed.get("tool_names")
        servers.append(
            McpServer(
                label=tool["server_label"],
                url=tool["server_url"],
                headers=dict(tool.get("headers") or {}),
                allowed_tools=frozenset(allowed) if allowed is not None else None,
                read_only=read_only,
            )
        )
    return servers


def check_mcp_urls(tools: list[JsonObject] | None, allowed_prefixes: list[str]) -> None:
    """Every MCP server must be on the operator's allow-list: Ferry connects to it."""
    for index, tool in enumerate(tools or []):
        if tool.get("type") != "mcp":
            continue
        url = tool.get("server_url", "")
        if not any(url.startswith(prefix) for prefix in allowed_prefixes):
            raise RequestError(
                f"MCP server URL '{url}' is not allowed on this server (see MCP_ALLOWED_URLS).",
                param=f"tools[{index}].server_url",
                code="mcp_server_not_allowed",
            )


def list_tools_item(server: McpServer, tools: list[McpTool], error: str | None) -> Item:
    return {
        "id": ids.new_id("mcpl"),
        "type": "mcp_list_tools",
        "server_label": server.label,
        "tools": [
            {
                "name": tool.name,
                "description": tool.description,
                "input_schema": tool.input_schema,
                "annotations": tool.annotations,
            }
            for tool in tools
            if server.allows(tool)
        ],
        "error": error,
    }


def offered_functions(list_items: list[Item]) -> dict[str, tuple[str, JsonObject]]:
    """Function tools for the listed MCP tools: name -> (server label, function tool)."""
    offered: dict[str, tuple[str, JsonObject]] = {}
    for item in list_items:
        for tool in item["tools"]:
            # Two servers offering one name: the first keeps it, as calls are by name.
            offered.setdefault(
                tool["name"],
                (
                    item["server_label"],
                    {
                        "type": "function",
                        "name": tool["name"],
                        "description": tool.get("description") or "",
                        "parameters": tool.get("input_schema") or {"type": "object"},
                    },
                ),
            )
    return offered
