"""The Response object: every property of the API's `ResponseResource`, null where unknown.

Parameters the client did not send are echoed with the value the model ran with (OpenAI's
defaults), so a Response always reads the same whichever mode produced it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.shapes import Item, JsonObject
from app.store.rows import StoredResponse

#: A Response object, as `response_object` builds it.
ResponseObject = dict[str, Any]

# What OpenAI reports for parameters the request left out.
ECHO_DEFAULTS: JsonObject = {
    "temperature": 1.0,
    "top_p": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "top_logprobs": 0,
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "truncation": "disabled",
}


def _epoch(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment is not None else None


def _echo_tool(tool: JsonObject) -> JsonObject:
    if tool.get("type") != "function":
        return tool
    return {
        "type": "function",
        "name": tool["name"],
        "description": tool.get("description"),
        "parameters": tool.get("parameters"),
        # As sent upstream (`app.engine.strict_tools`); null on rows from before it was.
        "strict": tool.get("strict"),
    }


def _echo_text(text: JsonObject | None) -> JsonObject:
    text = text or {}
    fmt = {k: v for k, v in (text.get("format") or {"type": "text"}).items() if v is not None}
    return {"format": fmt, "verbosity": text.get("verbosity") or "medium"}


def _echo_tier(tier: str | None) -> str:
    return "default" if tier in (None, "auto") else tier


def _echo_reasoning(reasoning: JsonObject | None) -> JsonObject | None:
    if reasoning is None:
        return None
    summary = reasoning.get("summary") or reasoning.get("generate_summary")
    return {"effort": reasoning.get("effort"), "summary": summary}


def _param(request: JsonObject, name: str) -> Any:
    value = request.get(name)
    return ECHO_DEFAULTS.get(name) if value is None else value


def response_object(
    stored: StoredResponse,
    output: list[Item],
) -> ResponseObject:
    """The Response for a stored row and the output assembled so far."""
    request = stored.request
    return {
        "id": stored.id,
        "object": "response",
        "created_at": _epoch(stored.created_at),
        "completed_at": _epoch(stored.completed_at),
        "status": stored.status,
        "incomplete_details": stored.incomplete_details,
        "model": stored.model,
        "previous_response_id": stored.previous_response_id,
        "conversation": (
            {"id": stored.conversation_id} if stored.conversation_id is not None else None
        ),
        "instructions": request.get("instructions"),
        "output": output,
        "error": stored.error,
        "tools": [_echo_tool(t) for t in request.get("tools") or []],
        "tool_choice": _param(request, "tool_choice"),
        "truncation": _param(request, "truncation"),
        "parallel_tool_calls": _param(request, "parallel_tool_calls"),
        "text": _echo_text(request.get("text")),
        "top_p": _param(request, "top_p"),
        "presence_penalty": _param(request, "presence_penalty"),
        "frequency_penalty": _param(request, "frequency_penalty"),
        "top_logprobs": _param(request, "top_logprobs"),
        "temperature": _param(request, "temperature"),
        "reasoning": _echo_reasoning(request.get("reasoning")),
        "usage": stored.usage,
        "max_output_tokens": request.get("max_output_tokens"),
        "max_tool_calls": request.get("max_tool_calls"),
        "store": request.get("store", True),
        "background": stored.background,
        "service_tier": _echo_tier(stored.service_tier),
        "metadata": request.get("metadata") or {},
        "safety_identifier": request.get("safety_identifier"),
        "prompt_cache_key": request.get("prompt_cache_key"),
        "user": request.get("user"),
    }
