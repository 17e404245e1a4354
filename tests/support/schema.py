"""Validation of Response objects and streaming events against the Open Responses OpenAPI.

`reference/openresponses-openapi.json` is the Open Responses specification's OpenAPI
document (Apache-2.0).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

DOCUMENT = json.loads(
    (Path(__file__).parent / "reference" / "openresponses-openapi.json").read_text()
)
SCHEMAS: dict[str, Any] = DOCUMENT["components"]["schemas"]


@cache
def _validator(schema_name: str) -> Draft202012Validator:
    wrapper = {"$ref": f"#/components/schemas/{schema_name}", "components": DOCUMENT["components"]}
    return Draft202012Validator(wrapper)


@cache
def _event_schemas() -> dict[str, str]:
    by_type = {}
    for name, schema in SCHEMAS.items():
        if name.endswith("StreamingEvent"):
            by_type[schema["properties"]["type"]["enum"][0]] = name
    return by_type


def assert_valid_response(response: dict[str, Any]) -> None:
    errors = sorted(_validator("ResponseResource").iter_errors(response), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]


def assert_valid_event(event: dict[str, Any]) -> None:
    name = _event_schemas().get(event["type"])
    assert name is not None, f"no schema for event type {event['type']}"
    errors = sorted(_validator(name).iter_errors(event), key=str)
    assert not errors, [f"{event['type']} {list(e.absolute_path)}: {e.message}" for e in errors[:5]]
