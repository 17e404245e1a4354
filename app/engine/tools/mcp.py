"""Remote MCP servers named in a request: which tools may be used, which wait for approval,
and their output items.

A request's `{"type": "mcp", ...}` tools are resolved once per response: the server's tools
are listed (an `mcp_list_tools` item), offered to the model as functions, and each call the
model makes becomes an `mcp_call` item that the loop completes with the server's answer, or,
for a tool its `require_approval` selects, an `mcp_approval_request` item that ends the
response (see `app.engine.approvals`).
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
class ToolFilter:
    """Selects a server's tools, as `allowed_tools` and `require_approval` filter them: by
    name, if names are given, and by the read-only annotation, if asked. A criterion left
    out selects every tool."""

    tool_names: frozenset[str] | None = None
    # True: only tools the server annotates `readOnlyHint`; False: only the others.
    read_only: bool | None = None

    @classmethod
    def of(cls, value: JsonObject) -> ToolFilter:
        """The filter of a (validated) `{"tool_names": [...], "read_only": bool}` object."""
        names = value.get("tool_names")
        return cls(
            tool_names=frozenset(names) if names is not None else None,
            read_only=value.get("read_only"),
        )

    def matches(self, name: str, annotations: JsonObject | None) -> bool:
        if self.tool_names is not None and name not in self.tool_names:
            return False
        if self.read_only is None:
            return True
        # MCP's default for an unannotated tool: it may modify its environment.
        return bool((annotations or {}).get("readOnlyHint", False)) is self.read_only


@dataclass(frozen=True)
class ApprovalPolicy:
    """Which of a server's tools wait for approval (`require_approval`).

    `"always"` (OpenAI's default, and Ferry's) and `"never"` decide for every tool. A filter
    object decides per tool: one its `always` filter selects waits, one its `never` filter
    selects runs at once, and one neither selects waits, as with no `require_approval`.
    """

    always: ToolFilter | None = None
    never: ToolFilter | None = None

    @classmethod
    def of(cls, value: str | JsonObject | None) -> ApprovalPolicy:
        """The policy of a (validated) `require_approval` value; null is the default."""
        if value is None or value == "always":
            return cls(always=ToolFilter())
        if value == "never":
            return cls(never=ToolFilter())
        assert isinstance(value, dict)
        always, never = value.get("always"), value.get("never")
        return cls(
            always=ToolFilter.of(always) if always is not None else None,
            never=ToolFilter.of(never) if never is not None else None,
        )

    def needs_approval(self, name: str, annotations: JsonObject | None) -> bool:
        # A tool both filters select waits: asking once too often is the safe mistake.
        if self.always is not None and self.always.matches(name, annotations):
            return True
        return not (self.never is not None and self.never.matches(name, annotations))


@dataclass(frozen=True)
class McpServer:
    label: str
    url: str
    headers: dict[str, str]
    allowed: ToolFilter  # what `allowed_tools` lets through
    approval: ApprovalPolicy  # what `require_approval` holds back

    def allows(self, tool: McpTool) -> bool:
        """Whether `allowed_tools` lets the model see (and so call) the tool."""
        return self.allowed.matches(tool.name, tool.annotations)


def mcp_servers(request: JsonObject) -> list[McpServer]:
    """The MCP servers of a (validated) request, in the order given."""
    servers = []
    for tool in request.get("tools") or []:
        if tool.get("type") != "mcp":
            continue
        allowed = tool.get("allowed_tools")
        # Either a list of names, or a filter object with `tool_names` and/or `read_only`.
        if isinstance(allowed, list):
            allowed = {"tool_names": allowed}
        servers.append(
            McpServer(
                label=tool["server_label"],
                url=tool["server_url"],
                headers=dict(tool.get("headers") or {}),
                allowed=ToolFilter.of(allowed or {}),
                approval=ApprovalPolicy.of(tool.get("require_approval")),
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


def tools_needing_approval(servers: list[McpServer], list_items: list[Item]) -> frozenset[str]:
    """The names of the listed tools whose calls wait for approval. A name two servers
    offer is the first server's (as in `offered_functions`), and so is its policy."""
    policies = {server.label: server.approval for server in servers}
    seen: set[str] = set()
    waiting = set()
    for item in list_items:
        policy = policies[item["server_label"]]
        for tool in item["tools"]:
            if tool["name"] in seen:
                continue
            seen.add(tool["name"])
            if policy.needs_approval(tool["name"], tool.get("annotations")):
                waiting.add(tool["name"])
    return frozenset(waiting)
