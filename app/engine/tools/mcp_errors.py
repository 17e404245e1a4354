"""The `error` of an `mcp_call` item, in the shapes OpenAI's API gives it."""

from __future__ import annotations

from typing import Literal, TypedDict

from app.shapes import JsonObject

# JSON-RPC "internal error": the code given to failures that carry none of their own.
INTERNAL_ERROR = -32603
INVALID_PARAMS = -32602


class TextBlock(TypedDict):
    type: Literal["text"]
    text: str


class McpToolExecutionError(TypedDict):
    """The tool ran and reported failure (MCP `isError`); `content` is what it said."""

    type: Literal["mcp_tool_execution_error"]
    content: list[TextBlock]


class McpProtocolError(TypedDict):
    """The call got no tool result: the conversation with the server failed, or never began."""

    type: Literal["mcp_protocol_error"]
    code: int
    message: str


#: An `mcp_call` item's `error`.
McpCallError = McpToolExecutionError | McpProtocolError


def execution_error(text: str) -> McpToolExecutionError:
    """An `mcp_call.error` for a tool that ran and reported failure (MCP `isError`)."""
    return {"type": "mcp_tool_execution_error", "content": [{"type": "text", "text": text}]}


def protocol_error(message: str, code: int = INTERNAL_ERROR) -> McpProtocolError:
    """An `mcp_call.error` for a call that did not get a tool result."""
    return {"type": "mcp_protocol_error", "code": code, "message": message}


def error_text(error: JsonObject | str) -> str:
    """The words of an `mcp_call.error`, for the model to read.

    The error is read back from an item of an earlier turn, so it is taken as plain JSON and
    every field is checked, rather than trusted to be a `McpCallError`.
    """
    if isinstance(error, str):
        return error
    if error.get("type") == "mcp_tool_execution_error":
        content = error.get("content") or []
        return "\n".join(block.get("text", "") for block in content if isinstance(block, dict))
    return str(error.get("message", ""))
