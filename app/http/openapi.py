"""The OpenAPI 3.1 document of what Ferry serves, at GET /openapi.json: its paths and
operations here, its schemas in `app.http.openapi_schemas`. A test walks the application's
routes and this document's paths both ways, so neither has one the other lacks.
"""

from __future__ import annotations

import copy
from functools import cache
from importlib import metadata

from app.http.openapi_schemas import (
    INCLUDABLE_SCHEMA,
    STRING,
    component_schemas,
    json_content,
    ref,
)
from app.shapes import JsonObject

_RESPONSE_ID = {
    "name": "response_id",
    "in": "path",
    "required": True,
    "schema": STRING,
    "description": "The id of a response (`resp_…`).",
}
_INCLUDE = {
    "name": "include",
    "in": "query",
    "schema": INCLUDABLE_SCHEMA,
    "style": "form",
    "explode": True,
    "description": "Checked as on create (`include[]` is read as well).",
}
_RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}}


def _reply(description: str, schema_name: str) -> JsonObject:
    return {"description": description, "content": json_content(ref(schema_name))}


def _error(description: str, headers: JsonObject | None = None) -> JsonObject:
    reply: JsonObject = {"description": description, "content": json_content(ref("ErrorEnvelope"))}
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
            **json_content(ref("ResponseResource")),
            "text/event-stream": {"schema": ref("ServerSentEvent")},
        },
    }


def _json_operation(
    operation_id: str, tag: str, summary: str, ok: str, *errors: int, body: bool = True
) -> JsonObject:
    """An operation taking and answering a JSON object (shapes as the SDK's types give
    them: see the README), with the error envelope for `errors`."""
    operation: JsonObject = {
        "operationId": operation_id,
        "tags": [tag],
        "summary": summary,
        "responses": {
            "200": {"description": ok, "content": json_content({"type": "object"})},
            **_errors(*errors),
        },
    }
    if body:
        operation["requestBody"] = {
            "required": True,
            "content": json_content({"type": "object"}),
        }
    return operation


_CONTEXT_PATHS: JsonObject = {
    "/v1/responses/compact": {
        "post": _json_operation(
            "compactResponse",
            "responses",
            "Compact a context into its user messages and one sealed `compaction` item.",
            "A `response.compaction` object.",
            400,
            401,
            404,
            413,
            429,
            502,
            503,
        )
    },
    "/v1/responses/input_tokens": {
        "post": _json_operation(
            "countInputTokens",
            "responses",
            "Count the input tokens a create with this body would send.",
            "A `response.input_tokens` object.",
            400,
            401,
            404,
            413,
            429,
            503,
        )
    },
}


def _path_id(name: str, what: str) -> JsonObject:
    return {"name": name, "in": "path", "required": True, "schema": STRING, "description": what}


_CONVERSATION_ID = _path_id("conversation_id", "The id of a conversation (`conv_…`).")
_ITEM_ID = _path_id("item_id", "The id of one of its items.")
_ITEMS_QUERY = [
    _INCLUDE,
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
    {"name": "order", "in": "query", "schema": {"enum": ["asc", "desc"]}},
    {"name": "after", "in": "query", "schema": STRING},
]
_CONVERSATION_ERRORS = (400, 401, 404, 409, 413, 429, 503)


def _conversation_op(operation_id: str, summary: str, ok: str, *, body: bool) -> JsonObject:
    return _json_operation(
        operation_id, "conversations", summary, ok, *_CONVERSATION_ERRORS, body=body
    )


_CONVERSATION_PATHS: JsonObject = {
    "/v1/conversations": {
        "post": _conversation_op(
            "createConversation", "Create a conversation.", "The conversation.", body=True
        )
    },
    "/v1/conversations/{conversation_id}": {
        "parameters": [_CONVERSATION_ID],
        "get": _conversation_op(
            "getConversation", "Retrieve a conversation.", "The conversation.", body=False
        ),
        "post": _conversation_op(
            "updateConversation", "Replace its metadata.", "The conversation.", body=True
        ),
        "delete": _conversation_op(
            "deleteConversation", "Delete it.", "`conversation.deleted`.", body=False
        ),
    },
    "/v1/conversations/{conversation_id}/items": {
        "parameters": [_CONVERSATION_ID],
        "post": {
            **_conversation_op("createItems", "Append items.", "The items added.", body=True),
            "parameters": [_INCLUDE],
        },
        "get": {
            **_conversation_op("listItems", "A page of its items.", "A list.", body=False),
            "parameters": _ITEMS_QUERY,
        },
    },
    "/v1/conversations/{conversation_id}/items/{item_id}": {
        "parameters": [_CONVERSATION_ID, _ITEM_ID],
        "get": {
            **_conversation_op("getItem", "One item.", "The item.", body=False),
            "parameters": [_INCLUDE],
        },
        "delete": _conversation_op(
            "deleteItem", "Remove an item.", "The conversation.", body=False
        ),
    },
}


_ENDPOINT_ID = _path_id("webhook_endpoint_id", "The id of a webhook endpoint (`whe_…`).")
_WEBHOOK_ERRORS = (400, 401, 404, 413, 429, 503)


def _webhook_op(operation_id: str, summary: str, ok: str, *, body: bool) -> JsonObject:
    return _json_operation(operation_id, "webhooks", summary, ok, *_WEBHOOK_ERRORS, body=body)


_WEBHOOK_PATHS: JsonObject = {
    "/v1/webhook_endpoints": {
        "post": _webhook_op(
            "createWebhookEndpoint",
            "Create an endpoint; its signing secret is shown this once.",
            "The endpoint, with `signing_secret`.",
            body=True,
        ),
        "get": {
            **_webhook_op("listWebhookEndpoints", "A page of endpoints.", "A list.", body=False),
            "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                {"name": "order", "in": "query", "schema": {"enum": ["asc", "desc"]}},
                {"name": "after", "in": "query", "schema": STRING},
            ],
        },
    },
    "/v1/webhook_endpoints/{webhook_endpoint_id}": {
        "parameters": [_ENDPOINT_ID],
        "get": _webhook_op("getWebhookEndpoint", "Retrieve an endpoint.", "It.", body=False),
        "post": _webhook_op("updateWebhookEndpoint", "Update an endpoint.", "It.", body=True),
        "delete": _webhook_op(
            "deleteWebhookEndpoint", "Delete an endpoint.", "`deleted: true`.", body=False
        ),
    },
    "/v1/webhook_endpoints/{webhook_endpoint_id}/rotate_secret": {
        "parameters": [_ENDPOINT_ID],
        "post": _webhook_op(
            "rotateWebhookSecret", "A new signing secret.", "It, with the secret.", body=False
        ),
    },
    "/v1/webhook_endpoints/{webhook_endpoint_id}/test": {
        "parameters": [_ENDPOINT_ID],
        "post": _webhook_op(
            "testWebhookEndpoint", "Send a signed test event now.", "The outcome.", body=False
        ),
    },
    "/v1/webhook_event_types": {
        "get": _webhook_op("listWebhookEventTypes", "The event types.", "A list.", body=False)
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
            "requestBody": {
                "required": True,
                "content": json_content(ref("CreateResponseRequest")),
            },
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
                "200": _reply("Deleted.", "DeletedResponse"),
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
                "200": {
                    "description": "The Response.",
                    "content": json_content(ref("ResponseResource")),
                },
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
                {"name": "after", "in": "query", "schema": STRING},
                _INCLUDE,
            ],
            "responses": {
                "200": _reply("A page.", "InputItemList"),
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


_HEALTH = {"200": _reply("Up.", "Health")}
_OPERATIONS_PATHS: JsonObject = {
    "/healthz": _operations_path("healthz", "Liveness: the process answers.", _HEALTH),
    "/health": _operations_path("health", "The same as /healthz.", _HEALTH),
    "/readyz": _operations_path(
        "readyz",
        "Readiness: the database answers within DB_PROBE_TIMEOUT_S, migrations are current.",
        {
            "200": _reply("Ready.", "Readiness"),
            "503": {
                "description": "Not ready, and why.",
                "content": json_content(ref("Readiness")),
            },
        },
    ),
    "/metrics": _operations_path(
        "metrics",
        "Prometheus metrics (text exposition format, or OpenMetrics when asked for).",
        {"200": {"description": "Metrics.", "content": {"text/plain": {"schema": STRING}}}},
    ),
    "/openapi.json": _operations_path(
        "openapi",
        "This document.",
        {"200": {"description": "OpenAPI 3.1.", "content": json_content({"type": "object"})}},
    ),
}


@cache
def _document() -> JsonObject:
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
            {"name": "conversations", "description": "OpenAI's Conversations API."},
            {"name": "webhooks", "description": "Webhook endpoints and their events."},
            {"name": "operations", "description": "Health, readiness, metrics, this document."},
        ],
        "security": [{}, {"bearerAuth": []}],
        "paths": {
            **_RESPONSES_PATHS,
            **_CONTEXT_PATHS,
            **_CONVERSATION_PATHS,
            **_WEBHOOK_PATHS,
            **_OPERATIONS_PATHS,
        },
        # OpenAPI has no word for a WebSocket; this extension names the paths that take one.
        "x-websockets": {
            "/v1/responses": {
                "description": "WebSocket mode: `response.create` messages in, the streaming "
                "events out, one response at a time (the Open Responses specification's "
                "WebSocket transport; see the README)."
            }
        },
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "One of API_KEYS; not needed when API_KEYS is unset.",
                }
            },
            "schemas": component_schemas(),
        },
    }


def openapi_document() -> JsonObject:
    """The document, as a copy the caller may change."""
    return copy.deepcopy(_document())
