"""The OpenAPI document: valid OpenAPI 3.1, and true to the application it describes: every
route it serves is documented and every documented operation is served, with the request
parameters, item types and error envelope the code has."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from starlette.routing import Route, WebSocketRoute

from app.config import Settings
from app.engine.input_items import CONTENT_PART_TYPES, ITEM_TYPES
from app.engine.request import CreateResponseRequest
from app.http.errors import error_response
from app.http.openapi import openapi_document
from app.http.server import build_app

DOCUMENT = openapi_document()
CONSOLE_PATH = "/console"
SCHEMAS: dict[str, Any] = DOCUMENT["components"]["schemas"]
METHODS = ("get", "post", "put", "patch", "delete")


def served() -> set[tuple[str, str]]:
    """(path, method) of every API route the application serves (HEAD is GET's shadow)."""
    app = build_app(Settings(database_url="postgresql://unused"))
    pairs = set()
    for route in app.routes:
        if route.path.startswith(CONSOLE_PATH):  # type: ignore[attr-defined]
            continue  # pages for a browser (see the README's Console), not the API
        if isinstance(route, WebSocketRoute):
            pairs.add((route.path, "websocket"))
            continue
        assert isinstance(route, Route), f"not a plain route: {route!r}"
        pairs.update((route.path, m.lower()) for m in route.methods or () if m != "HEAD")
    return pairs


def documented() -> set[tuple[str, str]]:
    """(path, method) of every operation the document names, WebSocket paths included."""
    sockets = {(path, "websocket") for path in DOCUMENT["x-websockets"]}
    return sockets | {(path, method) for path, method, _ in operations()}


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, item[method])
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in METHODS
    ]


def validator(schema_name: str) -> Draft202012Validator:
    wrapper = {"$ref": f"#/components/schemas/{schema_name}", "components": DOCUMENT["components"]}
    return Draft202012Validator(wrapper)


def test_the_document_is_valid_openapi() -> None:
    validate(DOCUMENT)
    assert DOCUMENT["openapi"].startswith("3.1")


def test_every_served_route_is_documented_and_every_documented_one_served() -> None:
    assert served() - documented() == set(), "served but not documented"
    assert documented() - served() == set(), "documented but not served"


def test_the_document_served_is_a_copy_a_caller_cannot_change() -> None:
    changed = openapi_document()
    changed["paths"].clear()
    assert openapi_document() == DOCUMENT


def test_operation_ids_are_unique() -> None:
    ids = [operation["operationId"] for _, _, operation in operations()]
    assert len(ids) == len(set(ids))


def test_the_create_request_documents_every_parameter_the_model_takes() -> None:
    documented_params = set(SCHEMAS["CreateResponseRequest"]["properties"])
    accepted = {field.alias or name for name, field in CreateResponseRequest.model_fields.items()}
    assert documented_params == accepted
    assert SCHEMAS["CreateResponseRequest"]["additionalProperties"] is False


def test_every_input_item_and_content_part_type_is_documented() -> None:
    items = [SCHEMAS[ref["$ref"].rsplit("/", 1)[1]] for ref in SCHEMAS["InputItem"]["anyOf"]]
    assert [item["properties"]["type"]["const"] for item in items] == list(ITEM_TYPES)
    parts = SCHEMAS["InputContentPart"]["anyOf"]
    assert [part["properties"]["type"]["const"] for part in parts] == list(CONTENT_PART_TYPES)


@pytest.mark.parametrize(("path", "method"), sorted((p, m) for p, m, _ in operations()))
def test_every_api_error_is_the_openai_envelope(path: str, method: str) -> None:
    operation = DOCUMENT["paths"][path][method]
    if not path.startswith("/v1/"):
        return
    assert "default" in operation["responses"]
    for status, reply in operation["responses"].items():
        if status == "default" or int(status) >= 400:
            schema = reply["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorEnvelope"}, (status, reply)


def test_the_envelope_schema_fits_what_the_error_handler_sends() -> None:
    for reply in (
        error_response(400, "Bad.", param="input[0].type", code="invalid_value"),
        error_response(503, "Down.", code="database_unavailable"),
    ):
        body = json.loads(bytes(reply.body))
        assert not list(validator("ErrorEnvelope").iter_errors(body))
    assert list(validator("ErrorEnvelope").iter_errors({"error": {"message": "no type"}}))


def test_responses_are_the_open_responses_resource() -> None:
    create = DOCUMENT["paths"]["/v1/responses"]["post"]["responses"]["200"]["content"]
    assert create["application/json"]["schema"] == {"$ref": "#/components/schemas/ResponseResource"}
    assert "text/event-stream" in create
    assert "ResponseResource" in SCHEMAS and "ResponseCompletedStreamingEvent" in SCHEMAS
