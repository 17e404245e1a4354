"""Build the `POST {base}/chat/completions` body from a Responses create request.

Pure functions only. Nothing here mutates its arguments; nested JSON values such as tool
parameter schemas are shared with the request rather than copied, since the body is only
serialised.
"""

from __future__ import annotations

from app.engine.chat.messages import ChatMessage
from app.engine.include import wants_logprobs
from app.shapes import JsonObject

# Sampling fields that exist on both APIs, keyed Responses name -> chat name.
_SAMPLING_FIELDS: dict[str, str] = {
    "temperature": "temperature",
    "top_p": "top_p",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    # `max_tokens` rather than `max_completion_tokens`: it is the name every
    # OpenAI-compatible upstream (vLLM, llama.cpp, Ollama, TGI) understands.
    "max_output_tokens": "max_tokens",
}

_FUNCTION_TOOL_OPTIONAL_KEYS = ("description", "parameters", "strict")
_JSON_SCHEMA_KEYS = ("name", "schema", "strict", "description")
_STRING_TOOL_CHOICES = frozenset({"none", "auto", "required"})


def chat_completion_body(
    request: JsonObject,
    messages: list[ChatMessage],
    extra_tools: list[JsonObject] | None = None,
) -> JsonObject:
    """Chat-completions request body for a Responses `request` and translated `messages`.

    `request` is the create request as stored; `extra_tools` are Responses tool definitions.
    """
    body: JsonObject = {
        "model": request.get("model"),
        "messages": messages,
        "stream": True,
        # Without this the upstream stream carries no usage, and the response could not
        # report token counts.
        "stream_options": {"include_usage": True},
    }
    body.update(sampling_fields(request))
    body.update(logprob_fields(request))
    body.update(tool_fields(request, extra_tools))
    response_format = chat_response_format(request.get("text"))
    if response_format is not None:
        body["response_format"] = response_format
    reasoning = request.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
    if effort is not None:
        # The chat-completions name of the same knob (vLLM, SGLang, Ollama, OpenAI).
        body["reasoning_effort"] = effort
    user = _end_user(request)
    if user is not None:
        body["user"] = user
    return body


def sampling_fields(request: JsonObject) -> JsonObject:
    """The sampling parameters the request sets, under their chat names."""
    return {
        chat_name: request[name]
        for name, chat_name in _SAMPLING_FIELDS.items()
        if request.get(name) is not None
    }


def logprob_fields(request: JsonObject) -> JsonObject:
    """`logprobs` and `top_logprobs`, asked for only when `include` wants the log
    probabilities: without it OpenAI shows none, whatever `top_logprobs` says, and chat
    upstreams refuse `top_logprobs` without `logprobs`."""
    if not wants_logprobs(request):
        return {}
    fields: JsonObject = {"logprobs": True}
    if request.get("top_logprobs") is not None:
        fields["top_logprobs"] = request["top_logprobs"]
    return fields


def tool_fields(request: JsonObject, extra_tools: list[JsonObject] | None = None) -> JsonObject:
    """`tools`, `tool_choice` and `parallel_tool_calls`, or nothing when no tool is sent.

    A `tool_choice` or `parallel_tool_calls` without `tools` is rejected by several
    upstreams (vLLM among them), so those fields only travel together with tools.
    """
    responses_tools = [*(request.get("tools") or []), *(extra_tools or [])]
    tools = [chat_function_tool(tool) for tool in responses_tools if _is_function_tool(tool)]
    if not tools:
        return {}
    fields: JsonObject = {"tools": tools}
    tool_choice = chat_tool_choice(request.get("tool_choice"))
    if tool_choice is not None:
        fields["tool_choice"] = tool_choice
    if request.get("parallel_tool_calls") is not None:
        fields["parallel_tool_calls"] = request["parallel_tool_calls"]
    return fields


def _is_function_tool(tool: JsonObject) -> bool:
    # Hosted tools (web_search, file_search, mcp, ...) have no chat equivalent; other layers
    # handle them, so they are simply not forwarded.
    return tool.get("type") == "function"


def chat_function_tool(tool: JsonObject) -> JsonObject:
    """Chat shape of a Responses function tool, which nests the definition under `function`."""
    function: JsonObject = {"name": tool["name"]}
    for key in _FUNCTION_TOOL_OPTIONAL_KEYS:
        if tool.get(key) is not None:
            function[key] = tool[key]
    return {"type": "function", "function": function}


def chat_tool_choice(tool_choice: str | JsonObject | None) -> str | JsonObject | None:
    """Chat `tool_choice`, or None when the choice has no chat equivalent.

    Unmappable choices (hosted tools, `allowed_tools`) are dropped so the upstream falls
    back to its default, `auto`, rather than failing the request.
    """
    if isinstance(tool_choice, str):
        return tool_choice if tool_choice in _STRING_TOOL_CHOICES else None
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "function":
        return {"type": "function", "function": {"name": tool_choice["name"]}}
    return None


def chat_response_format(text: JsonObject | None) -> JsonObject | None:
    """Chat `response_format` for the Responses `text.format`; None for plain text."""
    text_format = (text or {}).get("format")
    if not isinstance(text_format, dict):
        return None
    format_type = text_format.get("type")
    if format_type == "json_object":
        return {"type": "json_object"}
    if format_type == "json_schema":
        return {"type": "json_schema", "json_schema": _json_schema(text_format)}
    # `text` is the chat default, so it is expressed by sending nothing.
    return None


def _json_schema(text_format: JsonObject) -> JsonObject:
    # Responses flattens the schema fields into `format`; chat nests them in `json_schema`.
    return {key: text_format[key] for key in _JSON_SCHEMA_KEYS if text_format.get(key) is not None}


def _end_user(request: JsonObject) -> str | None:
    # `safety_identifier` is the Responses successor of `user`; chat only knows `user`, and
    # the newer field wins when a client sends both. Both were validated as strings when the
    # request was accepted.
    safety_identifier: str | None = request.get("safety_identifier")
    if safety_identifier is not None:
        return safety_identifier
    user: str | None = request.get("user")
    return user
