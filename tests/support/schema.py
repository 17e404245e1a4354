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
from openai.types.responses.response_text_delta_event import Logprob as EventLogprob

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


def assert_valid_compaction(compacted: dict[str, Any]) -> None:
    """A `response.compaction` object, as `POST /responses/compact` answers."""
    errors = sorted(_validator("CompactResource").iter_errors(compacted), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]


# Where Ferry follows OpenAI's SDK rather than the Open Responses document: the `logprobs` of
# the text delta and done events have no `bytes` in the SDK (ResponseTextDeltaEvent.Logprob,
# ResponseTextDoneEvent.Logprob), while the document reuses the output_text part's LogProb,
# which requires them. Those entries are checked against the SDK's type, field for field.
TEXT_EVENTS_WITH_SDK_LOGPROBS = frozenset(
    {"response.output_text.delta", "response.output_text.done"}
)


def assert_sdk_event_logprobs(entries: list[dict[str, Any]]) -> None:
    for entry in entries:
        assert set(entry) == {"token", "logprob", "top_logprobs"}, entry
        assert all(set(top) == {"token", "logprob"} for top in entry["top_logprobs"]), entry
        assert EventLogprob.model_validate(entry).to_dict() == entry


def assert_valid_event(event: dict[str, Any]) -> None:
    name = _event_schemas().get(event["type"])
    assert name is not None, f"no schema for event type {event['type']}"
    if event["type"] in TEXT_EVENTS_WITH_SDK_LOGPROBS:
        assert_sdk_event_logprobs(event.get("logprobs") or [])
        event = {**event, "logprobs": []}
    errors = sorted(_validator(name).iter_errors(event), key=str)
    assert not errors, [f"{event['type']} {list(e.absolute_path)}: {e.message}" for e in errors[:5]]


# Events Ferry sends that the Open Responses document defines no schema for.
UNSPECIFIED_EVENT_TYPES = frozenset(
    {
        "response.cancelled",  # named after OpenAI's webhook event
        "response.mcp_list_tools.in_progress",
        "response.mcp_list_tools.completed",
        "response.mcp_list_tools.failed",
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done",
        "response.mcp_call.in_progress",
        "response.mcp_call.completed",
        "response.mcp_call.failed",
        # OpenAI's names for raw reasoning text, as the SDK types them; the Open Responses
        # document calls the same events `response.reasoning.delta` and `.done`.
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
    }
)


def assert_valid_events(events: list[dict[str, Any]]) -> None:
    """Every event the document has a schema for is valid, the Responses they carry too."""
    for event in events:
        if event["type"] not in UNSPECIFIED_EVENT_TYPES:
            assert_valid_event(event)
