"""The registry of server-side HTTP tools (TOOLS_FILE, read by `app.tools_file`): what is
offered to the model, and which names a client's tools may not take."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from app.engine.errors import RequestError
from app.shapes import JsonObject
from app.tools_file import HttpTool, ToolsFileError, read_tools_file

__all__ = ["HttpTool", "ToolRegistry", "ToolsFileError", "load_tools"]


@dataclass(frozen=True)
class ToolRegistry:
    tools: dict[str, HttpTool] = field(default_factory=dict)

    def get(self, name: str) -> HttpTool | None:
        return self.tools.get(name)

    def offered_to(self, request: JsonObject) -> list[JsonObject]:
        """The tools offered to the model next to the client's: all, unless it asked none."""
        if request.get("tool_choice") == "none":
            return []
        return [tool.as_function_tool() for tool in self.tools.values()]

    def check_client_tools(self, tools: list[JsonObject] | None) -> None:
        """A client tool may not take the name of a registered one: calls would be ambiguous."""
        for index, tool in enumerate(tools or []):
            if tool.get("type") == "function" and tool.get("name") in self.tools:
                raise RequestError(
                    f"Tool name '{tool['name']}' is taken by a server-side tool; rename yours.",
                    param=f"tools[{index}].name",
                    code="tool_name_reserved",
                )


def load_tools(path: str | Path | None) -> ToolRegistry:
    """The registry in `path`; an empty one when no file is configured."""
    if not path:
        return ToolRegistry()
    return ToolRegistry(read_tools_file(path))
