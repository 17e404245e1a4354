"""The `error` of an `mcp_call` item, in the shapes OpenAI's API gives it."""

from __future__ import annotations

from typing import Any

# JSON-RPC "internal error": the code given to failures that carry none of their own.
INTERNAL_ERROR = -32603
INVALID_PARAMS = -32602


def execution_error(text: str) -> dict[str, Any]:
    """An `mcp_call.error` for a tool that ran and reported failure (MCP `isError`)."""
    return {"type": "mcp_tool_execution_error", "content": [{"type": "text", "text": text}]}


def protocol_error(message: str, code: int = INTERNAL_ERROR) -> dict[str, Any]:
    """An `mcp_call.error` for a call that did not get a tool result."""
    return {"type": "mcp_protocol_error", "code": code, "message": message}


def error_text(error: dict[str, Any] | str) -> str:
    """The words of an `mcp_call.error`, for the model to read."""
    if isinstance(error, str):
        return error
    if error.get("type") == "mcp_tool_execution_error":
        content = error.get("content") or []
        return "\n".join(block.get("text", "") for block in content if isinstance(block, dict))
    return str(error.get("message", ""))
