"""The `input` of a create request as typed items, each with an id (input_items lists them),
and the checks that name the offending `param` in OpenAI's wording."""

from __future__ import annotations

from typing import Any

from app import ids
from app.engine.errors import RequestError
from app.shapes import Item, JsonObject, Part

MESSAGE_ROLES = ("user", "system", "developer", "assistant")
#: What an assistant message may say it is: intermediate commentary, or the final answer.
MESSAGE_PHASES = ("commentary", "final_answer")
CONTENT_PART_TYPES = ("input_text", "input_image", "input_file", "output_text", "refusal")
ITEM_TYPES = (
    "message",
    "function_call",
    "function_call_output",
    "reasoning",
    "mcp_list_tools",
    "mcp_call",
    "mcp_approval_request",
    "mcp_approval_response",
    "item_reference",
    "compaction",
)
REASONING_STATUSES = ("in_progress", "completed", "incomplete")
MCP_CALL_STATUSES = ("in_progress", "completed", "incomplete", "calling", "failed")
MCP_ERROR_TYPES = ("mcp_protocol_error", "mcp_tool_execution_error", "http_error")


def invalid(param: str, message: str, code: str = "invalid_value") -> RequestError:
    return RequestError(message, param=param, code=code)


def unsupported(param: str, value: Any, supported: tuple[str, ...]) -> RequestError:
    allowed = ", ".join(f"'{v}'" for v in supported)
    return invalid(param, f"Invalid value: '{value}'. Supported values are: {allowed}.")


def require_str(item: JsonObject, key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        if value is None:
            raise invalid(
                f"{where}.{key}",
                f"Missing required parameter: '{where}.{key}'.",
                "missing_required_parameter",
            )
        raise invalid(
            f"{where}.{key}",
            f"Invalid type for '{where}.{key}': expected a string.",
            "invalid_type",
        )
    return value


def optional_str(item: JsonObject, key: str, where: str) -> str | None:
    """A field that may be left out or null, and is otherwise a string."""
    if item.get(key) is None:
        return None
    return require_str(item, key, where)


def require_object(value: Any, where: str) -> JsonObject:
    if not isinstance(value, dict):
        raise invalid(where, f"Invalid type for '{where}': expected an object.", "invalid_type")
    return value


def require_list(item: JsonObject, key: str, where: str) -> list[Any]:
    value = item.get(key)
    if value is None:
        raise invalid(
            f"{where}.{key}",
            f"Missing required parameter: '{where}.{key}'.",
            "missing_required_parameter",
        )
    if not isinstance(value, list):
        message = f"Invalid type for '{where}.{key}': expected an array."
        raise invalid(f"{where}.{key}", message, "invalid_type")
    return value


def _status(item: JsonObject, where: str, allowed: tuple[str, ...]) -> str:
    status = item.get("status")
    if status is None:
        return "completed"
    if status not in allowed:
        raise unsupported(f"{where}.status", status, allowed)
    return str(status)


def _normalise_file(part: JsonObject, where: str, *, allowed: bool) -> Part:
    """An `input_file` part: its file as `file_data` or `file_url` (read when the request
    is accepted, `app.engine.input_files`), with an optional `filename`."""
    if not allowed:
        raise invalid(where, "input_file parts are accepted in user messages only.")
    if part.get("file_id") is not None:
        raise invalid(
            f"{where}.file_id",
            "Files by 'file_id' are not supported (Ferry has no Files API): send the file "
            "as 'file_data' or 'file_url'.",
            "unsupported_value",
        )
    data = optional_str(part, "file_data", where)
    url = optional_str(part, "file_url", where)
    if (data is None) == (url is None):
        message = "Give the file as one of 'file_data' or 'file_url'."
        code = "missing_required_parameter" if data is None else "invalid_value"
        raise invalid(f"{where}.file_data", message, code)
    normalised: Part = {"type": "input_file"}
    filename = optional_str(part, "filename", where)
    if filename is not None:
        normalised["filename"] = filename
    if data is not None:
        normalised["file_data"] = data
    else:
        normalised["file_url"] = url
    return normalised


def _normalise_part(part: Any, where: str, *, files: bool = False) -> Part:
    """A content part; `files`: whether `input_file` parts may be among them."""
    require_object(part, where)
    kind = part.get("type")
    if kind not in CONTENT_PART_TYPES:
        raise unsupported(f"{where}.type", kind, CONTENT_PART_TYPES)
    if kind == "input_file":
        return _normalise_file(part, where, allowed=files)
    if kind in ("input_text", "output_text"):
        require_str(part, "text", where)
    elif kind == "refusal":
        require_str(part, "refusal", where)
    elif kind == "input_image":
        require_str(part, "image_url", where)
        detail = part.get("detail", "auto")
        if detail not in ("auto", "low", "high"):
            raise invalid(f"{where}.detail", f"Invalid value for '{where}.detail': '{detail}'.")
    return dict(part)


def _normalise_message(item: JsonObject, where: str) -> Item:
    role = item.get("role")
    if role not in MESSAGE_ROLES:
        raise unsupported(f"{where}.role", role, MESSAGE_ROLES)
    content = item.get("content")
    if isinstance(content, str):
        parts: list[Part] = [
            {"type": "output_text" if role == "assistant" else "input_text", "text": content}
        ]
        if role == "assistant":
            parts[0]["annotations"] = []
    elif isinstance(content, list):
        files = role == "user"
        parts = [
            _normalise_part(p, f"{where}.content[{i}]", files=files) for i, p in enumerate(content)
        ]
    else:
        raise invalid(
            f"{where}.content",
            f"Invalid type for '{where}.content': expected a string or an array of content parts.",
            "invalid_type",
        )
    normalised: Item = {
        "type": "message",
        "id": item.get("id") or ids.message_id(),
        "role": role,
        "status": item.get("status") or "completed",
        "content": parts,
    }
    phase = item.get("phase")
    if phase is not None:
        # Kept as sent (input_items shows it): models that label their messages want the
        # label back on later turns. It says nothing a chat upstream reads.
        if phase not in MESSAGE_PHASES:
            raise unsupported(f"{where}.phase", phase, MESSAGE_PHASES)
        normalised["phase"] = phase
    return normalised


def _normalise_function_call(item: JsonObject, where: str) -> Item:
    return {
        "type": "function_call",
        "id": item.get("id") or ids.function_call_id(),
        "call_id": require_str(item, "call_id", where),
        "name": require_str(item, "name", where),
        "arguments": require_str(item, "arguments", where),
        "status": item.get("status") or "completed",
    }


def _normalise_function_call_output(item: JsonObject, where: str) -> Item:
    output = item.get("output")
    if isinstance(output, list):
        output = [_normalise_part(p, f"{where}.output[{i}]") for i, p in enumerate(output)]
    elif not isinstance(output, str):
        raise invalid(
            f"{where}.output",
            f"Invalid type for '{where}.output': expected a string or an array of content parts.",
            "invalid_type",
        )
    return {
        "type": "function_call_output",
        "id": item.get("id") or ids.new_id("fco"),
        "call_id": require_str(item, "call_id", where),
        "output": output,
        "status": item.get("status") or "completed",
    }


def _text_parts(item: JsonObject, key: str, where: str, part_type: str) -> list[Part]:
    """A list of `{"type": part_type, "text": ...}` parts, as a reasoning item holds."""
    parts: list[Part] = []
    for index, part in enumerate(require_list(item, key, where)):
        at = f"{where}.{key}[{index}]"
        require_object(part, at)
        if part.get("type") != part_type:
            raise unsupported(f"{at}.type", part.get("type"), (part_type,))
        parts.append({"type": part_type, "text": require_str(part, "text", at)})
    return parts


def _normalise_reasoning(item: JsonObject, where: str) -> Item:
    encrypted = optional_str(item, "encrypted_content", where)
    given_id = optional_str(item, "id", where)
    normalised: Item = {
        "type": "reasoning",
        # Without an id, a sealed item takes the id sealed with it (`resolve_input`).
        "id": given_id or (None if encrypted else ids.new_id("rs")),
        "summary": _text_parts(item, "summary", where, "summary_text"),
    }
    if item.get("content") is not None:
        normalised["content"] = _text_parts(item, "content", where, "reasoning_text")
    if encrypted is not None:
        normalised["encrypted_content"] = encrypted
    normalised["status"] = _status(item, where, REASONING_STATUSES)
    return normalised


def _normalise_listed_tool(tool: Any, where: str) -> JsonObject:
    require_object(tool, where)
    schema = tool.get("input_schema")
    if schema is None:
        raise invalid(
            f"{where}.input_schema",
            f"Missing required parameter: '{where}.input_schema'.",
            "missing_required_parameter",
        )
    require_object(schema, f"{where}.input_schema")
    annotations = tool.get("annotations")
    if annotations is not None:
        require_object(annotations, f"{where}.annotations")
    return {
        "name": require_str(tool, "name", where),
        "description": optional_str(tool, "description", where),
        "input_schema": schema,
        "annotations": annotations,
    }


def _normalise_mcp_list_tools(item: JsonObject, where: str) -> Item:
    tools = require_list(item, "tools", where)
    return {
        "type": "mcp_list_tools",
        "id": require_str(item, "id", where),
        "server_label": require_str(item, "server_label", where),
        "tools": [_normalise_listed_tool(t, f"{where}.tools[{i}]") for i, t in enumerate(tools)],
        "error": optional_str(item, "error", where),
    }


def _mcp_error(item: JsonObject, where: str) -> JsonObject | str | None:
    error = item.get("error")
    if error is None or isinstance(error, str):
        return error  # older outputs gave the error as a string
    require_object(error, f"{where}.error")
    if error.get("type") not in MCP_ERROR_TYPES:
        raise unsupported(f"{where}.error.type", error.get("type"), MCP_ERROR_TYPES)
    return dict(error)


def _normalise_mcp_call(item: JsonObject, where: str) -> Item:
    normalised: Item = {
        "type": "mcp_call",
        "id": require_str(item, "id", where),
        "status": _status(item, where, MCP_CALL_STATUSES),
        "server_label": require_str(item, "server_label", where),
        "name": require_str(item, "name", where),
        "arguments": require_str(item, "arguments", where),
        "output": optional_str(item, "output", where),
        "error": _mcp_error(item, where),
    }
    approval = optional_str(item, "approval_request_id", where)
    if approval is not None:
        normalised["approval_request_id"] = approval
    return normalised


def _normalise_mcp_approval_request(item: JsonObject, where: str) -> Item:
    normalised: Item = {
        "type": "mcp_approval_request",
        "id": require_str(item, "id", where),
        "server_label": require_str(item, "server_label", where),
        "name": require_str(item, "name", where),
        "arguments": require_str(item, "arguments", where),
    }
    # Only one cut off before it was complete has a status (see `app.engine.approvals`).
    if _status(item, where, REASONING_STATUSES) == "incomplete":
        normalised["status"] = "incomplete"
    return normalised


def _normalise_mcp_approval_response(item: JsonObject, where: str) -> Item:
    approve = item.get("approve")
    if approve is None:
        raise invalid(
            f"{where}.approve",
            f"Missing required parameter: '{where}.approve'.",
            "missing_required_parameter",
        )
    if not isinstance(approve, bool):
        raise invalid(
            f"{where}.approve",
            f"Invalid type for '{where}.approve': expected a boolean.",
            "invalid_type",
        )
    return {
        "type": "mcp_approval_response",
        "id": optional_str(item, "id", where) or ids.new_id("mcpa"),
        "approval_request_id": require_str(item, "approval_request_id", where),
        "approve": approve,
        "reason": optional_str(item, "reason", where),
    }


def _normalise_compaction(item: JsonObject, where: str) -> Item:
    # Opened when the request is accepted (`resolve_input`); without an id it takes the one
    # sealed in its blob, as a reasoning item does.
    optional_str(item, "created_by", where)
    return {
        "type": "compaction",
        "id": optional_str(item, "id", where),
        "encrypted_content": require_str(item, "encrypted_content", where),
    }


def _normalise_item_reference(item: JsonObject, where: str) -> Item:
    # Resolved to the item it names when the request is accepted (`resolve_input`).
    return {"type": "item_reference", "id": require_str(item, "id", where)}


_ITEM_NORMALISERS = {
    "message": _normalise_message,
    "function_call": _normalise_function_call,
    "function_call_output": _normalise_function_call_output,
    "reasoning": _normalise_reasoning,
    "mcp_list_tools": _normalise_mcp_list_tools,
    "mcp_call": _normalise_mcp_call,
    "mcp_approval_request": _normalise_mcp_approval_request,
    "mcp_approval_response": _normalise_mcp_approval_response,
    "item_reference": _normalise_item_reference,
    "compaction": _normalise_compaction,
}


def _item_type(item: JsonObject) -> Any:
    """The item's type; the SDK leaves it out of an easy message (it has a role) and may
    leave it out, or null, in an item reference (it has only an id)."""
    kind = item.get("type")
    if kind is not None:
        return kind
    if "role" in item:
        return "message"
    if "id" in item:
        return "item_reference"
    return None


def normalise_input(raw: str | list[JsonObject] | None, param: str = "input") -> list[Item]:
    """The request's `input` as a list of typed items, each with an id (for input_items).

    `param` names the list in errors: `input`, or a conversation's `items`.
    """
    if raw is None:
        return []
    if isinstance(raw, str):
        return [_normalise_message({"role": "user", "content": raw}, param)]
    items = []
    for index, item in enumerate(raw):
        where = f"{param}[{index}]"
        kind = _item_type(item)
        normaliser = _ITEM_NORMALISERS.get(kind) if isinstance(kind, str) else None
        if normaliser is None:
            raise unsupported(f"{where}.type", kind, ITEM_TYPES)
        items.append(normaliser(item, where))
    return items
