"""The OpenAPI 3.1 document of what Ferry serves, at GET /openapi.json.

Written as data, with the parts that would drift taken from the code itself: the create
request's parameters are the pydantic model's (`CreateResponseRequest`), the input item and
content part types are `app.engine.input_items`'s lists, the `include` values are
`app.engine.include`'s. Response objects and streaming events are the Open Responses
specification's schemas (a copy of its OpenAPI document ships next to this module,
Apache-2.0), which Ferry's follow; only those referenced are included. A test walks the
application's routes and this document's paths both ways, so neither has one the other
lacks.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from app.engine.include import INCLUDABLE, SUPPORTED
from app.engine.input_items import CONTENT_PART_TYPES, ITEM_TYPES, MESSAGE_ROLES
from app.engine.request import CreateResponseRequest
from app.shapes import JsonObject

OPEN_RESPONSES_FILE = Path(__file__).with_name("openresponses-openapi.json")
_SCHEMAS = "#/components/schemas/"
_REQUEST_DEF_PREFIX = "Create"  # the request model's own sub-models, e.g. CreateTextConfig


def _ref(name: str) -> JsonObject:
    return {"$ref": f"{_SCHEMAS}{name}"}


def _json(schema: JsonObject) -> JsonObject:
    return {"application/json": {"schema": schema}}


def _nullable(schema: JsonObject) -> JsonObject:
    return {"anyOf": [schema, {"type": "null"}]}


def _const_type(kind: str) -> JsonObject:
    return {"type": "string", "const": kind}


# --- Ferry's own schemas ----------------------------------------------------------------------

_STRING = {"type": "string"}

_ERROR_SCHEMAS: dict[str, JsonObject] = {
    "ErrorEnvelope": {
        "type": "object",
        "description": "OpenAI's error envelope: every error Ferry answers with.",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {"error": _ref("ErrorDetail")},
    },
    "ErrorDetail": {
        "type": "object",
        "required": ["message", "type", "param", "code"],
        "additionalProperties": False,
        "properties": {
            "message": _STRING,
            "type": {
                "type": "string",
                "description": "invalid_request_error for 4xx (rate_limit_exceeded for 429), "
                "server_error for 5xx.",
            },
            "param": {
                **_nullable(_STRING),
                "description": "The parameter at fault, e.g. `input[0].type`.",
            },
            "code": _nullable(_STRING),
        },
    },
}

_CONTENT_PART_SCHEMAS: dict[str, JsonObject] = {
    "input_text": {"text": _STRING},
    "output_text": {"text": _STRING},
    "refusal": {"refusal": _STRING},
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
        "properties": {"type": _const_type(kind), **_CONTENT_PART_SCHEMAS.get(kind, {})},
    }


_CONTENT = {
    "anyOf": [_STRING, {"type": "array", "items": _ref("InputContentPart")}],
    "description": "A string, or an array of content parts.",
}
_ITEM_FIELDS: dict[str, tuple[list[str], JsonObject]] = {
    "message": (
        ["role", "content"],
        {
            "type": {
                **_const_type("message"),
                "description": "May be left out: an object with a `role` is a message.",
            },
            "role": {"type": "string", "enum": list(MESSAGE_ROLES)},
            "content": _CONTENT,
        },
    ),
    "function_call": (
        ["type", "call_id", "name", "arguments"],
        {
            "type": _const_type("function_call"),
            "call_id": _STRING,
            "name": _STRING,
            "arguments": {"type": "string", "description": "JSON text."},
        },
    ),
    "function_call_output": (
        ["type", "call_id", "output"],
        {"type": _const_type("function_call_output"), "call_id": _STRING, "output": _CONTENT},
    ),
}


def _input_item(kind: str) -> JsonObject:
    required, fields = _ITEM_FIELDS.get(kind, (["type"], {"type": _const_type(kind)}))
    return {
        "type": "object",
        "required": required,
        "properties": {"id": _STRING, "status": _STRING, **fields},
    }


_TOOL_SCHEMAS: dict[str, JsonObject] = {
    "FunctionToolParameter": {
        "type": "object",
        "description": "A function the client runs; the model's calls come back to it.",
        "required": ["type", "name"],
        "properties": {
            "type": _const_type("function"),
            "name": _STRING,
            "description": _STRING,
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
            "type": _const_type("mcp"),
            "server_label": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"},
            "server_url": {"type": "string", "pattern": "^https?://"},
            "server_description": _STRING,
            "require_approval": {"type": "string", "const": "never"},
            "headers": {"type": "object", "additionalProperties": _STRING},
            "allowed_tools": {
                "anyOf": [
                    {"type": "array", "items": _STRING},
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "tool_names": {"type": "array", "items": _STRING},
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
            "id": _STRING,
            "object": _const_type("response"),
            "deleted": {"const": True},
        },
    },
    "InputItemList": {
        "type": "object",
        "required": ["object", "data", "first_id", "last_id", "has_more"],
        "additionalProperties": False,
        "properties": {
            "object": _const_type("list"),
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "description": "An input item as stored: the create's item, normalised, "
                    "with its id.",
                    "required": ["id", "type"],
                    "properties": {
                        "id": _STRING,
                        "type": {"type": "string", "enum": list(ITEM_TYPES)},
                    },
                },
            },
            "first_id": _nullable(_STRING),
            "last_id": _nullable(_STRING),
            "has_more": {"type": "boolean"},
        },
    },
    "ServerSentEvent": {
        "type": "object",
        "description": "One event of the stream (`: keep-alive` comments come between them).",
        "required": ["event", "data"],
        "properties": {
            "event": {"type": "string", "description": "The event's `type`."},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": _ref("StreamEvent"),
            },
        },
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
        "properties": {"status": _const_type("ok")},
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
            "message": _STRING,
        },
    },
}


# The values that work; the SDK's others name outputs of OpenAI's built-in tools, which Ferry
# lacks: a 400 naming `include[i]`.
_INCLUDABLE = {
    "type": "array",
    "items": {"type": "string", "enum": [value for value in INCLUDABLE if value in SUPPORTED]},
    "description": "Other values the SDK knows are refused (Ferry has no built-in tools).",
}


def _request_schemas() -> dict[str, JsonObject]:
    """The create request's schema, from the model Ferry validates it with; `input` and
    `tools`, which the model takes as plain objects and checks by hand, spelt out."""
    template = f"{_SCHEMAS}{_REQUEST_DEF_PREFIX}{{model}}"
    schema = CreateResponseRequest.model_json_schema(by_alias=True, ref_template=template)
    defs = {f"{_REQUEST_DEF_PREFIX}{name}": sub for name, sub in schema.pop("$defs", {}).items()}
    properties = schema["properties"]
    properties["input"] = {
        "anyOf": [
            {"type": "string", "description": "One user message."},
            {"type": "array", "items": _ref("InputItem")},
            {"type": "null"},
        ]
    }
    tool = {"anyOf": [_ref("FunctionToolParameter"), _ref("McpToolParameter")]}
    properties["tools"] = _nullable({"type": "array", "items": tool})
    properties["include"] = _nullable(_INCLUDABLE)
    return {
        "CreateResponseRequest": schema,
        **defs,
        "InputItem": {"anyOf": [_ref(f"InputItem.{kind}") for kind in ITEM_TYPES]},
        **{f"InputItem.{kind}": _input_item(kind) for kind in ITEM_TYPES},
        "InputContentPart": {"anyOf": [_content_part(kind) for kind in CONTENT_PART_TYPES]},
        **_TOOL_SCHEMAS,
    }


# --- operations -------------------------------------------------------------------------------

_RESPONSE_ID = {
    "name": "response_id",
    "in": "path",
    "required": True,
    "schema": _STRING,
    "description": "The id of a response (`resp_…`).",
}
_INCLUDE = {
    "name": "include",
    "in": "query",
    "schema": _INCLUDABLE,
    "style": "form",
    "explode": True,
    "description": "Checked as on create (`include[]` is read as well).",
}
_RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}}


def _error(description: str, headers: JsonObject | None = None) -> JsonObject:
    reply: JsonObject = {"description": description, "content": _json(_ref("ErrorEnvelope"))}
    if headers:
        reply["headers"] = headers
    return reply


def _errors(*statuses: int) -> dict[str, JsonObject]:
    known = {
        400: _error("Invalid request: `param` names what is wrong."),
        401: _error("A missing or unknown API key (when API_KEYS is set)."),
        404: _error("No such response (or not this key's, or created with `store: false`)."),
        409: _error("An Idempotency-Key reused with another body, or a result not kept."),
        413: _error("The body is larger than MAX_BODY_BYTES."),
        429: _error("Admission control, or the upstream's own 429.", _RETRY_AFTER),
        502: _error("The upstream rejected Ferry's credentials (upstream_auth_failed)."),
        503: _error("The database is unavailable (database_unavailable).", _RETRY_AFTER),
        504: _error("A held (flex) request outlived FLEX_TIMEOUT_S; the work goes on."),
    }
    return {
        **{str(status): known[status] for status in statuses},
        "default": _error("Any other error, in the same envelope."),
    }


def _response_or_stream(description: str) -> JsonObject:
    return {
        "description": description,
        "content": {
            **_json(_ref("ResponseResource")),
            "text/event-stream": {"schema": _ref("ServerSentEvent")},
        },
    }


_RESPONSES_PATHS: JsonObject = {
    "/v1/responses": {
        "post": {
            "operationId": "createResponse",
            "tags": ["responses"],
            "summary": "Create a response (blocking, streamed, background or flex).",
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "schema": {"type": "string", "maxLength": 255},
                    "description": "A retried create with the same key gets the same response.",
                }
            ],
            "requestBody": {"required": True, "content": _json(_ref("CreateResponseRequest"))},
            "responses": {
                "200": _response_or_stream("The Response (or its events, when streaming)."),
                **_errors(400, 401, 404, 409, 413, 429, 502, 503, 504),
            },
        }
    },
    "/v1/responses/{response_id}": {
        "parameters": [_RESPONSE_ID],
        "get": {
            "operationId": "getResponse",
            "tags": ["responses"],
            "summary": "Retrieve a response, or replay and follow its event log.",
            "parameters": [
                _INCLUDE,
                {"name": "stream", "in": "query", "schema": {"type": "boolean"}},
                {
                    "name": "starting_after",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": -1},
                    "description": "With stream=true: replay after this sequence number.",
                },
            ],
            "responses": {
                "200": _response_or_stream("The Response (or its event log, with stream=true)."),
                **_errors(400, 401, 404, 503),
            },
        },
        "delete": {
            "operationId": "deleteResponse",
            "tags": ["responses"],
            "summary": "Delete a response, cancelling it first if it runs.",
            "responses": {
                "200": {"description": "Deleted.", "content": _json(_ref("DeletedResponse"))},
                **_errors(401, 404, 503),
            },
        },
    },
    "/v1/responses/{response_id}/cancel": {
        "parameters": [_RESPONSE_ID],
        "post": {
            "operationId": "cancelResponse",
            "tags": ["responses"],
            "summary": "Cancel a background response (idempotent).",
            "responses": {
                "200": {"description": "The Response.", "content": _json(_ref("ResponseResource"))},
                **_errors(400, 401, 404, 503),
            },
        },
    },
    "/v1/responses/{response_id}/input_items": {
        "parameters": [_RESPONSE_ID],
        "get": {
            "operationId": "listInputItems",
            "tags": ["responses"],
            "summary": "The response's input items, a page at a time.",
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                },
                {
                    "name": "order",
                    "in": "query",
                    "schema": {"type": "string", "enum": ["asc", "desc"], "default": "desc"},
                },
                {"name": "after", "in": "query", "schema": _STRING},
                _INCLUDE,
            ],
            "responses": {
                "200": {"description": "A page.", "content": _json(_ref("InputItemList"))},
                **_errors(400, 401, 404, 503),
            },
        },
    },
}


def _operations_path(operation_id: str, summary: str, reply: JsonObject) -> JsonObject:
    return {
        "get": {
            "operationId": operation_id,
            "tags": ["operations"],
            "summary": summary,
            "security": [],
            "responses": reply,
        }
    }


_HEALTH = {"200": {"description": "Up.", "content": _json(_ref("Health"))}}
_OPERATIONS_PATHS: JsonObject = {
    "/healthz": _operations_path("healthz", "Liveness: the process answers.", _HEALTH),
    "/health": _operations_path("health", "The same as /healthz.", _HEALTH),
    "/readyz": _operations_path(
        "readyz",
        "Readiness: the database answers within DB_PROBE_TIMEOUT_S, migrations are current.",
        {
            "200": {"description": "Ready.", "content": _json(_ref("Readiness"))},
            "503": {"description": "Not ready, and why.", "content": _json(_ref("Readiness"))},
        },
    ),
    "/metrics": _operations_path(
        "metrics",
        "Prometheus metrics (text exposition format, or OpenMetrics when asked for).",
        {"200": {"description": "Metrics.", "content": {"text/plain": {"schema": _STRING}}}},
    ),
    "/openapi.json": _operations_path(
        "openapi",
        "This document.",
        {"200": {"description": "OpenAPI 3.1.", "content": _json({"type": "object"})}},
    ),
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
        pending.extend(part.split('"', 1)[0] for part in text.split(f'"{_SCHEMAS}')[1:])
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
        for ref in refs:
            field = schemas[ref.removeprefix(_SCHEMAS)]["properties"][discriminator["propertyName"]]
            for value in field.get("enum", [field.get("const")]):
                mapping[value] = ref
        node["discriminator"] = {**discriminator, "mapping": mapping}
    return node


@cache
def _document() -> JsonObject:
    open_responses = json.loads(OPEN_RESPONSES_FILE.read_text(encoding="utf-8"))
    theirs: dict[str, Any] = open_responses["components"]["schemas"]
    events = [name for name in theirs if name.endswith("StreamingEvent")]
    ours = {**_ERROR_SCHEMAS, **_request_schemas(), **copy.deepcopy(_RESOURCE_SCHEMAS)}
    generic_event = {
        "type": "object",
        "required": ["type", "sequence_number"],
        "properties": {"type": _STRING, "sequence_number": {"type": "integer"}},
    }
    ours["StreamEvent"]["anyOf"] = [*(_ref(name) for name in events), generic_event]
    clash = set(ours) & set(theirs)
    assert not clash, f"schema names defined twice: {sorted(clash)}"
    included = _referenced(theirs, ["ResponseResource", *events])
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Ferry",
            "version": metadata.version("ferry"),
            "description": "A durable implementation of OpenAI's Responses API in front of a "
            "chat-completions upstream. Response objects and streaming events follow the "
            "Open Responses specification's schemas.",
        },
        "tags": [
            {"name": "responses", "description": "OpenAI's Responses API."},
            {"name": "operations", "description": "Health, readiness, metrics, this document."},
        ],
        "security": [{}, {"bearerAuth": []}],
        "paths": {**_RESPONSES_PATHS, **_OPERATIONS_PATHS},
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "One of API_KEYS; not needed when API_KEYS is unset.",
                }
            },
            "schemas": {
                **ours,
                **{
                    name: _with_discriminator_mappings(theirs[name], theirs)
                    for name in sorted(included)
                },
            },
        },
    }


def openapi_document() -> JsonObject:
    """The document, as a copy the caller may change."""
    return copy.deepcopy(_document())
