"""Server-side HTTP tools, registered by the operator in a TOML file (TOOLS_FILE).

    [[tools]]
    name = "get_weather"
    description = "Current weather for a city"
    url = "http://weather.internal/lookup"
    timeout_s = 10
    retry_safe = true
    parameters = { type = "object", properties = { city = { type = "string" } } }
    headers = { Authorization = "Bearer ${WEATHER_TOKEN}" }

Header values may name environment variables as `${NAME}`; they are resolved when the file
is loaded, and a missing variable is an error then, not at the first call.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.engine.errors import RequestError
from app.shapes import JsonObject

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ToolsFileError(ValueError):
    """The tools file cannot be used; the message says where and why."""


class _ToolEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str = ""
    parameters: JsonObject = Field(default_factory=lambda: {"type": "object"})  # JSON Schema
    url: str = Field(pattern=r"^https?://")
    timeout_s: float = Field(default=30.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)
    retry_safe: bool = True


@dataclass(frozen=True)
class HttpTool:
    name: str
    description: str
    parameters: JsonObject  # JSON Schema
    url: str
    timeout_s: float
    headers: dict[str, str] = field(repr=False)  # may hold secrets
    retry_safe: bool

    def as_function_tool(self) -> JsonObject:
        """How the tool is offered to the model: a Responses function tool."""
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
        }


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


def _resolve_env(value: str, where: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ToolsFileError(f"{where}: environment variable {name} is not set")
        return os.environ[name]

    return _ENV_REFERENCE.sub(replace, value)


def load_tools(path: str | Path | None) -> ToolRegistry:
    """The registry in `path`; an empty one when no file is configured."""
    if not path:
        return ToolRegistry()
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ToolsFileError(f"cannot read tools file {path}: {exc}") from exc
    tools: dict[str, HttpTool] = {}
    for index, raw in enumerate(data.get("tools", [])):
        where = f"{path}: tools[{index}]"
        try:
            entry = _ToolEntry.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(part) for part in first["loc"])
            raise ToolsFileError(f"{where}.{loc}: {first['msg']}") from None
        if entry.name in tools:
            raise ToolsFileError(f"{where}: tool {entry.name!r} is registered twice")
        headers = {k: _resolve_env(v, f"{where}.headers.{k}") for k, v in entry.headers.items()}
        tools[entry.name] = HttpTool(
            name=entry.name,
            description=entry.description,
            parameters=entry.parameters,
            url=entry.url,
            timeout_s=entry.timeout_s,
            headers=headers,
            retry_safe=entry.retry_safe,
        )
    return ToolRegistry(tools)
