"""The components of the OpenAPI document (`app.http.openapi`): Ferry's own schemas, and
the Open Responses specification's, which Ferry's Response objects and streaming events follow
(a copy of its OpenAPI document ships next to this module, Apache-2.0; only the schemas
referenced are used).

The parts that would drift are taken from the code itself: the create request's parameters
are the pydantic model's (`CreateResponseRequest`), the input item and content part types are
`app.engine.input_items`'s lists, the `include` values are `app.engine.include`'s.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from app.engine.include import INCLUDABLE, SUPPORTED
from app.engine.input_items import CONTENT_PART_TYPES, ITEM_TYPES, MESSAGE_ROLES
from app.engine.request import CreateResponseRequest
from app.shapes import JsonObject

OPEN_RESPONSES_FILE = Path(__file__).with_name("openresponses-openapi.json")
SCHEMAS = "#/components/schemas/"
_REQUEST_DEF_PREFIX = "Create"  # the request model's own sub-models, e.g. CreateTextConfig


def ref(name: str) -> JsonObject:
    return {"$ref": f"{SCHEMAS}{name}"}


def json_content(schema: JsonObject) -> JsonObject:
    return {"application/json": {"schema": schema}}


def nullable(schema: JsonObject) -> JsonObject:
    return {"anyOf": [schema, {"type": "null"}]}


def const_type(kind: str) -> JsonObject:
    return {"type": "string", "const": kind}


# --- Ferry's own schemas ----------------------------------------------------------------------

STRING = {"type": "string"}

_ERROR_SCHEMAS: dict[str, JsonObject] = {
    "ErrorEnvelope": {
        "type": "object",
        "description": "OpenAI's error envelope: every error Ferry answers with.",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {"error": ref("ErrorDetail")},
    },
    "ErrorDetail": {
        "type": "object",
        "required": ["message", "type", "param", "code"],
        "additionalProperties": False,
        "properties": {
            "message": STRING,
            "type": {
                "type": "string",
                "description": "invalid_request_error for 4xx (rate_limit_exceeded for 429), "
                "server_error for 5xx.",
            },
            "param": {
                **nullable(STRING),
                "description": "The parameter at fault, e.g. `input[0].type`.",
            },
            "code": nullable(STRING),
        },
    },
}

_CONTENT_PART_SCHEMAS: dict[str, JsonObject] = {
    "input_text": {"text": STRING},
    "output_text": {"text": STRING},
    "refusal": {"refusal": STRING},
    "input_image": {
        "image_url": {"type": "string", "description": "A URL or a data URL."},
        "detail": {"type": "string", "enum": ["auto", "low", "high"]},
    },
}
_REQUIRED_PART_FIELDS = {"input_text": ["text"], "output_text": ["text"], "refusal": ["refusal"]}
_REQUIRED_PART_FIELDS["input_image"] = ["image_url"]


def _content_part(kind: str) -> JsonObject:
    return {
        "type": "object",
        "required": ["type", *_REQUIRED_PART_FIELDS.get(kind, [])],
        "properties": {"type": const_type(kind), **_CONTENT_PART_SCHEMAS.get(kind, {})},
    }


_CONTENT = {
    "anyOf": [STRING, {"type": "array", "items": ref("InputContentPart")}],
    "description": "A string, or an array of content parts.",
}
_ITEM_FIELDS: dict[str, tuple[list[str], JsonObject]] = {
    "message": (
        ["role", "content"],
        {
            "type": {
                **const_type("message"),
                "description": "May be left out: an object with a `role` is a message.",
            },
            "role": {"type": "string", "enum": list(MESSAGE_ROLES)},
            "content": _CONTENT,
        },
    ),
    "function_call": (
        ["type", "call_id", "name", "arguments"],
        {
            "type": const_type("function_call"),
            "call_id": STRING,
            "name": STRING,
            "arguments": {"type": "string", "description": "JSON text."},
        },
    ),
    "function_call_output": (
        ["type", "call_id", "output"],
        {"type": const_type("function_call_output"), "call_id": STRING, "output": _CONTENT},
    ),
}


def _input_item(kind: str) -> JsonObject:
    required, fields = _ITEM_FIELDS.get(kind, (["type"], {"type": const_type(kind)}))
    return {
        "type": "object",
        "required": required,
        "properties": {"id": STRING, "status": STRING, **fields},
    }


_TOOL_SCHEMAS: dict[str, JsonObject] = {
    "FunctionToolParameter": {
        "type": "object",
        "description": "A function the client runs; the model's calls come back to it.",
        "required": ["type", "name"],
        "properties": {
            "type": const_type("function"),
            "name": STRING,
            "description": STRING,
            "parameters": {"type": "object", "description": "JSON Schema."},
            "strict": {"type": "boolean"},
        },
    },
    "McpToolParameter": {
        "type": "object",
        "description": "A remote MCP server (streamable HTTP) whose URL MCP_ALLOWED_URLS allows.",
        "required": ["type", "server_label", "server_url", "require_approval"],
        "additionalProperties": False,
        "properties": {
            "type": const_type("mcp"),
            "server_label": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"},
            "server_url": {"type": "string", "pattern": "^https?://"},
            "server_description": STRING,
            "require_approval": {"type": "string", "const": "never"},
            "headers": {"type": "object", "additionalProperties": STRING},
            "allowed_tools": {
                "anyOf": [
                    {"type": "array", "items": STRING},
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "tool_names": {"type": "array", "items": STRING},
                            "read_only": {"type": "boolean"},
                        },
                    },
                ]
            },
        },
    },
}

_RESOURCE_SCHEMAS: dict[str, JsonObject] = {
    "DeletedResponse": {
        "type": "object",
        "required": ["id", "object", "deleted"],
        "additionalProperties": False,
        "properties": {
            "id": STRING,
            "object": const_type("response"),
            "deleted": {"const": True},
        },
    },
    "InputItemList": {
        "type": "object",
        "required": ["object", "data", "first_id", "last_id", "has_more"],
        "additionalProperties": False,
        "properties": {
            "object": const_type("list"),
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "description": "An input item as stored: the create's item, normalised, "
                    "with its id.",
                    "required": ["id", "type"],
                    "properties": {
                        "id": STRING,
                        "type": {"type": "string", "enum": list(ITEM_TYPES)},
                    },
                },
            },
            "first_id": nullable(STRING),
            "last_id": nullable(STRING),
            "has_more": {"type": "boolean"},
        },
    },
    "ServerSentEvent": {
        "description": "One event of the stream (`: keep-alive` comments come between them), "
        "or the `data: [DONE]` line that ends it, after the terminal event.",
        "anyOf": [
            {
                "type": "object",
                "required": ["event", "data"],
                "properties": {
                    "event": {"type": "string", "description": "The event's `type`."},
                    "data": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": ref("StreamEvent"),
                    },
                },
            },
            {
                "type": "object",
                "required": ["data"],
                "properties": {"data": {"const": "[DONE]"}},
            },
        ],
    },
    "StreamEvent": {
        "description": "The data of a Server-Sent Event: an "
        "Open Responses streaming event, or one it has no schema for (response.cancelled, "
        "reasoning_text deltas, MCP events), which has the same `type` and "
        "`sequence_number`.",
        "anyOf": [],  # filled in with the Open Responses events
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": const_type("ok")},
    },
    "Readiness": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"type": "string", "enum": ["ready", "not_ready"]},
            "reason": {
                "type": "string",
                "enum": ["database_unavailable", "migrations_pending", "shutting_down"],
            },
            "message": STRING,
        },
    },
}


# The values that work; the SDK's others name outputs of OpenAI's built-in tools, which Ferry
# lacks: a 400 naming `include[i]`.
INCLUDABLE_SCHEMA = {
    "type": "array",
    "items": {"type": "string", "enum": [value for value in INCLUDABLE if value in SUPPORTED]},
    "description": "Other values the SDK knows are refused (Ferry has no built-in tools).",
}


def _request_schemas() -> dict[str, JsonObject]:
    """The create request's schema, from the model Ferry validates it with; `input` and
    `tools`, which the model takes as plain objects and checks by hand, spelt out."""
    template = f"{SCHEMAS}{_REQUEST_DEF_PREFIX}{{model}}"
    schema = CreateResponseRequest.model_json_schema(by_alias=True, ref_template=template)
    defs = {f"{_REQUEST_DEF_PREFIX}{name}": sub for name, sub in schema.pop("$defs", {}).items()}
    properties = schema["properties"]
    properties["input"] = {
        "anyOf": [
            {"type": "string", "description": "One user message."},
            {"type": "array", "items": ref("InputItem")},
            {"type": "null"},
        ]
    }
    tool = {"anyOf": [ref("FunctionToolParameter"), ref("McpToolParameter")]}
    properties["tools"] = nullable({"type": "array", "items": tool})
    properties["include"] = nullable(INCLUDABLE_SCHEMA)
    return {
        "CreateResponseRequest": schema,
        **defs,
        "InputItem": {"anyOf": [ref(f"InputItem.{kind}") for kind in ITEM_TYPES]},
        **{f"InputItem.{kind}": _input_item(kind) for kind in ITEM_TYPES},
        "InputContentPart": {"anyOf": [_content_part(kind) for kind in CONTENT_PART_TYPES]},
        **_TOOL_SCHEMAS,
    }


def _referenced(schemas: dict[str, Any], roots: list[str]) -> list[str]:
    """`roots` and every schema they reference, transitively."""
    seen: list[str] = []
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.append(name)
        text = json.dumps(schemas[name])
        pending.extend(part.split('"', 1)[0] for part in text.split(f'"{SCHEMAS}')[1:])
    return seen


def _with_discriminator_mappings(node: Any, schemas: dict[str, Any]) -> Any:
    """`node` with every discriminator's mapping spelt out. The Open Responses document
    leaves them implicit, which OpenAPI reads as the schemas' names ("Message"), while the
    values are the `type` each schema admits ("message")."""
    if isinstance(node, list):
        return [_with_discriminator_mappings(child, schemas) for child in node]
    if not isinstance(node, dict):
        return node
    node = {key: _with_discriminator_mappings(child, schemas) for key, child in node.items()}
    discriminator = node.get("discriminator")
    if isinstance(discriminator, dict) and "mapping" not in discriminator:
        refs = [branch["$ref"] for branch in node.get("oneOf", node.get("anyOf", [node]))]
        mapping = {}
        for target in refs:
            schema = schemas[target.removeprefix(SCHEMAS)]
            field = schema["properties"][discriminator["propertyName"]]
            for value in field.get("enum", [field.get("const")]):
                mapping[value] = target
        node["discriminator"] = {**discriminator, "mapping": mapping}
    return node


def component_schemas() -> dict[str, JsonObject]:
    """Every schema the document defines: Ferry's, then the Open Responses ones it uses."""
    open_responses = json.loads(OPEN_RESPONSES_FILE.read_text(encoding="utf-8"))
    theirs: dict[str, Any] = open_responses["components"]["schemas"]
    events = [name for name in theirs if name.endswith("StreamingEvent")]
    ours = {**_ERROR_SCHEMAS, **_request_schemas(), **copy.deepcopy(_RESOURCE_SCHEMAS)}
    generic_event = {
        "type": "object",
        "required": ["type", "sequence_number"],
        "properties": {"type": STRING, "sequence_number": {"type": "integer"}},
    }
    ours["StreamEvent"]["anyOf"] = [*(ref(name) for name in events), generic_event]
    clash = set(ours) & set(theirs)
    assert not clash, f"schema names defined twice: {sorted(clash)}"
    included = _referenced(theirs, ["ResponseResource", *events])
    return {
        **ours,
        **{name: _with_discriminator_mappings(theirs[name], theirs) for name in sorted(included)},
    }
