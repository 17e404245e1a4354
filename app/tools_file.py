"""The operator's TOOLS_FILE: server-side HTTP tools in TOML, read and checked.

    [[tools]]
    name = "get_weather"
    description = "Current weather for a city"
    url = "http://weather.internal/lookup"
    timeout_s = 10
    retry_safe = true
    parameters = { type = "object", properties = { city = { type = "string" } } }
    headers = { Authorization = "Bearer ${WEATHER_TOKEN}" }

Header values may name environment variables as `${NAME}`; they are resolved when the file
is loaded, and a missing variable is an error then, not at the first call. The settings
read the file when they are loaded, so a bad file stops a process as it starts.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from jsonschema import Draft202012Validator, SchemaError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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


def _resolve_env(value: str, where: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ToolsFileError(f"{where}: environment variable {name} is not set")
        return os.environ[name]

    return _ENV_REFERENCE.sub(replace, value)


def _check_parameters(parameters: JsonObject, where: str) -> None:
    """The arguments' schema must be one a model can be given: a JSON Schema of an object.

    Checked here because an upstream refuses a bad one only when a request offers it.
    """
    try:
        Draft202012Validator.check_schema(parameters)
    except SchemaError as exc:
        path = "".join(f"[{part!r}]" for part in exc.path)
        raise ToolsFileError(
            f"{where}.parameters{path}: not a valid JSON Schema: {exc.message}"
        ) from None
    if parameters.get("type") != "object":
        raise ToolsFileError(f"{where}.parameters.type: must be 'object' (the arguments object)")


def read_tools_file(path: str | Path) -> dict[str, HttpTool]:
    """The tools registered in `path`, by name; ToolsFileError saying where when unusable."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ToolsFileError(f"cannot read tools file {path}: {exc}") from exc
    entries = data.get("tools", [])
    if not isinstance(entries, list):
        raise ToolsFileError(f"{path}: tools: must be an array of tables ([[tools]])")
    tools: dict[str, HttpTool] = {}
    for index, raw in enumerate(entries):
        where = f"{path}: tools[{index}]"
        try:
            entry = _ToolEntry.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = "".join(f".{part}" for part in first["loc"])
            raise ToolsFileError(f"{where}{loc}: {first['msg']}") from None
        if entry.name in tools:
            raise ToolsFileError(f"{where}: tool {entry.name!r} is registered twice")
        _check_parameters(entry.parameters, where)
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
    return tools
