"""Validation against the Open Responses schema: the one place the unit tier imports it from."""

from __future__ import annotations

from typing import Any

from app.shapes import Event
from tests.schema import assert_valid_event, assert_valid_response

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
    }
)


def assert_valid_events(events: list[Event]) -> None:
    """Every event with a schema is valid against it, the Response objects they carry too."""
    for event in events:
        if event["type"] in UNSPECIFIED_EVENT_TYPES:
            continue
        assert_valid_event(event)


def assert_valid(response: dict[str, Any]) -> None:
    assert_valid_response(response)


__all__ = ["assert_valid", "assert_valid_events"]
