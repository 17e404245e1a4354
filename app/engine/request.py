"""The create-response request: parsed, checked and normalised before any row is written.

Every rejection is a `RequestError` naming the offending `param`, in OpenAI's wording, so a
bad request never reaches the database.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from app import ids
from app.engine.errors import RequestError
from app.engine.include import Includable, check_include
from app.engine.input_items import invalid, normalise_input, require_str, unsupported
from app.engine.strict_tools import settle_strict
from app.shapes import Item, JsonObject

ServiceTier = Literal["auto", "default", "flex", "priority", "scale"]
ToolChoiceMode = Literal["none", "auto", "required"]


# Counts beyond this are no limit at all; bounded so they fit every integer column and
# every upstream's parser.
MAX_COUNT = 2**31 - 1
# OpenAI's limits on `metadata`.
METADATA_MAX_PAIRS = 16
METADATA_MAX_KEY_CHARS = 64
METADATA_MAX_VALUE_CHARS = 512


class FunctionToolChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["function"]
    name: str


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema_: JsonObject | None = Field(default=None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class TextConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: TextFormat = Field(default_factory=lambda: TextFormat(type="text"))
    verbosity: Literal["low", "medium", "high"] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_obfuscation: bool | None = None


ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]
ReasoningSummary = Literal["auto", "concise", "detailed"]


class ReasoningConfig(BaseModel):
    """`reasoning`: the effort is forwarded upstream; the summary is accepted and echoed.
    Other fields the SDK knows (`mode`, `context`) are accepted and not acted on."""

    model_config = ConfigDict(extra="allow")
    effort: ReasoningEffort | None = None
    summary: ReasoningSummary | None = None
    generate_summary: ReasoningSummary | None = None  # the SDK's deprecated name of `summary`


class ConversationParam(BaseModel):
    """`conversation` as an object: `{"id": "conv_..."}`; a plain id is taken too."""

    model_config = ConfigDict(extra="forbid")
    id: str


# An object is checked as the object form only, so an error names `conversation.id`.
ConversationChoice = Annotated[
    Annotated[str, Tag("str")] | Annotated[ConversationParam, Tag("ConversationParam")],
    Discriminator(
        # Called on what is validated (a dict) and on what is serialised (the model).
        lambda value: "ConversationParam" if isinstance(value, dict | ConversationParam) else "str"
    ),
]


class RequestBody(BaseModel):
    """A request body: unknown parameters refused, and `null` for a parameter is not giving
    it. Clients other than the SDK send `null` for parameters they leave unset; it means the
    default, as it does to OpenAI, not a wrong type."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _null_is_not_given(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


class CreateResponseRequest(RequestBody):
    """The parameters of POST /v1/responses that Ferry accepts."""

    model: str = Field(min_length=1)
    input: str | list[JsonObject] | None = None  # as sent; `normalise_input` checks it
    instructions: str | None = None
    previous_response_id: str | None = None
    conversation: ConversationChoice | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    background: bool = False
    store: bool = True
    service_tier: ServiceTier | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    max_output_tokens: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    max_tool_calls: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    tools: list[JsonObject] | None = None  # as sent; `_check_tools` checks them
    tool_choice: ToolChoiceMode | FunctionToolChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    metadata: dict[str, str] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    include: list[Includable] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None

    @property
    def conversation_id(self) -> str | None:
        if isinstance(self.conversation, ConversationParam):
            return self.conversation.id
        return self.conversation


_UNION_BRANCH_NAMES = frozenset({"str", "int", "float", "bool", "function-after"})


def _param_path(loc: tuple[int | str, ...]) -> str:
    """pydantic's error location as OpenAI's `param`, e.g. `tools[0].name`."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in _UNION_BRANCH_NAMES or not part.isidentifier() or part[0].isupper():
            continue  # pydantic names the union branch it tried; not part of the client's path
        else:
            path += f".{part}" if path else part
    return path


def error_from_validation(exc: ValidationError) -> RequestError:
    error = exc.errors()[0]
    loc = tuple(error["loc"])
    param = _param_path(loc)
    kind = error["type"]
    if kind == "missing":
        return RequestError(
            f"Missing required parameter: '{param}'.",
            param=param,
            code="missing_required_parameter",
        )
    if kind == "extra_forbidden":
        return RequestError(f"Unknown parameter: '{param}'.", param=param, code="unknown_parameter")
    if param == "input":
        return RequestError(
            "Invalid type for 'input': expected a string or an array of input items.",
            param="input",
            code="invalid_type",
        )
    return RequestError(
        f"Invalid value for '{param}': {error['msg']}.", param=param, code="invalid_value"
    )


def _check_function_tool(tool: JsonObject, where: str) -> None:
    require_str(tool, "name", where)
    parameters = tool.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise invalid(
            f"{where}.parameters", "Invalid type: expected a JSON Schema object.", "invalid_type"
        )
    strict = tool.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise invalid(f"{where}.strict", "Invalid type: expected a boolean.", "invalid_type")


def _check_mcp_tool(tool: JsonObject, where: str) -> None:
    label = require_str(tool, "server_label", where)
    if not label or not all(c.isalnum() or c in "_-" for c in label):
        raise invalid(f"{where}.server_label", "Use letters, digits, '_' and '-' only.")
    url = require_str(tool, "server_url", where)
    if not url.startswith(("http://", "https://")):
        raise invalid(f"{where}.server_url", "The MCP server URL must be http(s).")
    _check_require_approval(tool.get("require_approval"), f"{where}.require_approval")
    allowed = tool.get("allowed_tools")
    if isinstance(allowed, dict):
        _check_tool_filter(allowed, f"{where}.allowed_tools")
    elif allowed is not None and not (
        isinstance(allowed, list) and all(isinstance(n, str) for n in allowed)
    ):
        raise invalid(f"{where}.allowed_tools", "Expected a list of tool names.", "invalid_type")
    headers = tool.get("headers")
    if headers is not None and not (
        isinstance(headers, dict) and all(isinstance(v, str) for v in headers.values())
    ):
        raise invalid(f"{where}.headers", "Expected an object of strings.", "invalid_type")
    unknown = set(tool) - MCP_TOOL_FIELDS
    if unknown:
        name = sorted(unknown)[0]
        raise RequestError(
            f"Unknown parameter: '{where}.{name}'.",
            param=f"{where}.{name}",
            code="unknown_parameter",
        )


def _check_tool_filter(value: JsonObject, where: str) -> None:
    """A filter object of MCP tools: `{"tool_names": [...], "read_only": bool}`."""
    unknown_filters = set(value) - {"tool_names", "read_only"}
    if unknown_filters:
        name = sorted(unknown_filters)[0]
        raise invalid(
            f"{where}.{name}", f"Unknown parameter: '{where}.{name}'.", "unknown_parameter"
        )
    read_only = value.get("read_only")
    if read_only is not None and not isinstance(read_only, bool):
        raise invalid(f"{where}.read_only", "Expected a boolean.", "invalid_type")
    names = value.get("tool_names")
    if names is not None and not (
        isinstance(names, list) and all(isinstance(n, str) for n in names)
    ):
        raise invalid(f"{where}.tool_names", "Expected a list of tool names.", "invalid_type")


def _check_require_approval(value: Any, where: str) -> None:
    """`"always"`, `"never"`, or `{"always": filter, "never": filter}` (either or both)."""
    if value is None or value in ("always", "never"):
        return
    if isinstance(value, str):
        raise unsupported(where, value, ("always", "never"))
    if not isinstance(value, dict):
        raise invalid(
            where, "Expected 'always', 'never' or an object of tool filters.", "invalid_type"
        )
    for key, tool_filter in value.items():
        if key not in ("always", "never"):
            raise invalid(
                f"{where}.{key}", f"Unknown parameter: '{where}.{key}'.", "unknown_parameter"
            )
        if tool_filter is None:
            continue
        if not isinstance(tool_filter, dict):
            raise invalid(f"{where}.{key}", "Expected an object.", "invalid_type")
        _check_tool_filter(tool_filter, f"{where}.{key}")


MCP_TOOL_FIELDS = frozenset(
    {
        "type",
        "server_label",
        "server_url",
        "allowed_tools",
        "headers",
        "require_approval",
        "server_description",
    }
)
_TOOL_CHECKS = {"function": _check_function_tool, "mcp": _check_mcp_tool}


def _check_tools(tools: list[JsonObject] | None) -> None:
    labels: set[str] = set()
    for index, tool in enumerate(tools or []):
        where = f"tools[{index}]"
        kind = tool.get("type")
        check = _TOOL_CHECKS.get(kind) if isinstance(kind, str) else None
        if check is None:
            raise unsupported(f"{where}.type", tool.get("type"), tuple(_TOOL_CHECKS))
        check(tool, where)
        if tool["type"] == "mcp":
            if tool["server_label"] in labels:
                raise invalid(f"{where}.server_label", "Each MCP server needs its own label.")
            labels.add(tool["server_label"])


def check_metadata(metadata: dict[str, str] | None) -> None:
    if metadata is None:
        return
    if len(metadata) > METADATA_MAX_PAIRS:
        raise invalid(
            "metadata",
            f"Invalid 'metadata': too many properties. Expected an object with at most "
            f"{METADATA_MAX_PAIRS} properties, but got an object with {len(metadata)} "
            "properties instead.",
            "object_above_max_properties",
        )
    for key, value in metadata.items():
        if len(key) > METADATA_MAX_KEY_CHARS:
            raise invalid(
                "metadata",
                f"Invalid 'metadata': keys may be at most {METADATA_MAX_KEY_CHARS} characters "
                f"long, but a key has {len(key)}.",
                "string_above_max_length",
            )
        if len(value) > METADATA_MAX_VALUE_CHARS:
            raise invalid(
                f"metadata.{key}",
                f"Invalid 'metadata.{key}': string too long. Expected a string with maximum "
                f"length {METADATA_MAX_VALUE_CHARS}, but got a string with length {len(value)} "
                "instead.",
                "string_above_max_length",
            )


def _check_conversation(request: CreateResponseRequest) -> None:
    conversation_id = request.conversation_id
    if conversation_id is None:
        return
    if request.previous_response_id is not None:
        raise RequestError(
            "Mutually exclusive parameters. Ensure you are only providing one of: "
            "'previous_response_id' or 'conversation'.",
            param="conversation",
            code="mutually_exclusive_parameters",
        )
    if not (conversation_id.startswith("conv_") and ids.is_well_formed(conversation_id)):
        # Echoed only when it is short and plain: the message quotes what was sent.
        shown = f" '{conversation_id}'" if ids.is_well_formed(conversation_id) else ""
        raise invalid(
            "conversation",
            f"Invalid 'conversation':{shown}. Expected an ID that begins with 'conv_'.",
        )


def _check_tool_choice(request: CreateResponseRequest) -> None:
    choice = request.tool_choice
    if isinstance(choice, FunctionToolChoice):
        names = {t.get("name") for t in request.tools or []}
        if choice.name not in names:
            raise invalid(
                "tool_choice",
                f"Tool choice '{choice.name}' not found in 'tools' parameter.",
            )


def parse_create_request(body: Any) -> tuple[CreateResponseRequest, list[Item]]:
    """Validate a decoded JSON body; return the request and its normalised input items."""
    if not isinstance(body, dict):
        raise RequestError(
            "The request body must be a JSON object.", param=None, code="invalid_json"
        )
    try:
        request = CreateResponseRequest.model_validate(body)
    except ValidationError as exc:
        raise error_from_validation(exc) from None
    if request.stream_options is not None and not request.stream:
        raise invalid(
            "stream_options",
            "Invalid value for 'stream_options': only allowed when 'stream' is true.",
        )
    if request.text is not None and request.text.format.type == "json_schema":
        if not request.text.format.name or request.text.format.schema_ is None:
            raise invalid("text.format", "A json_schema format needs 'name' and 'schema'.")
    check_metadata(request.metadata)
    _check_conversation(request)
    check_include(request.include or [])
    _check_tools(request.tools)
    _check_tool_choice(request)
    if request.tools:
        # Decided here, once: what is sent upstream is what every Response echoes.
        request = request.model_copy(update={"tools": settle_strict(request.tools)})
    return request, normalise_input(request.input)
