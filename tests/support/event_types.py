"""The sequences of streaming event types the tests expect, written once for both tiers."""

from __future__ import annotations


def message_events(deltas: int) -> list[str]:
    """The events of one streamed text message, from its item's addition to its end, with
    `deltas` text deltas."""
    return [
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]


def reasoning_events(deltas: int) -> list[str]:
    """The events of one streamed reasoning item, with `deltas` reasoning text deltas."""
    return [
        "response.output_item.added",
        "response.content_part.added",
        *["response.reasoning_text.delta"] * deltas,
        "response.reasoning_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]


# The events of an MCP tool's use that a stream carries besides its items' added and done:
# the listing of the server's tools, then the call.
MCP_EVENTS = [
    "response.mcp_list_tools.in_progress",
    "response.mcp_list_tools.completed",
    "response.mcp_call_arguments.done",
    "response.mcp_call.in_progress",
    "response.mcp_call.completed",
]
