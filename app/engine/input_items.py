"""The `input` of a create request as typed items, each with an id (input_items lists them),
and the checks that name the offending `param` in OpenAI's wording."""

from __future__ import annotations

from typing import Any

from app import ids
from app.engine.errors import RequestError
from app.shapes import Item, JsonObject, Part

MESSAGE_ROLES = ("user", "system", "developer", "assistant")
CONTENT_PART_TYPES = ("input_text", "input_image", "output_text", "refusal")
ITEM_TYPES = ("message", "function_call", "function_call_output")


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


def _normalise_part(part: Any, where: str) -> Part:
    if not isinstance(part, dict):
        raise invalid(where, f"Invalid type for '{where}': expected an object.", "invalid_type")
    kind = part.get("type")
    if kind not in CONTENT_PART_TYPES:
        raise unsupported(f"{where}.type", kind, CONTENT_PART_TYPES)
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
        parts = [_normalise_part(p, f"{where}.content[{i}]") for i, p in enumerate(content)]
    else:
        raise invalid(
            f"{where}.content",
            f"Invalid type for '{where}.content': expected a string or an array of content parts.",
            "invalid_type",
        )
    return {
        "type": "message",
        "id": item.get("id") or ids.message_id(),
        "role": role,
        "status": item.get("status") or "completed",
        "content": parts,
    }


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


_ITEM_NORMALISERS = {
    "message": _normalise_message,
    "function_call": _normalise_function_call,
    "function_call_output": _normalise_function_call_output,
}


def normalise_input(raw: str | list[JsonObject] | None) -> list[Item]:
    """The request's `input` as a list of typed items, each with an id (for input_items)."""
    if raw is None:
        return []
    if isinstance(raw, str):
        return [_normalise_message({"role": "user", "content": raw}, "input")]
    items = []
    for index, item in enumerate(raw):
        where = f"input[{index}]"
        # The "easy" message form has a role but no type.
        kind = item.get("type", "message" if "role" in item else None)
        normaliser = _ITEM_NORMALISERS.get(kind) if isinstance(kind, str) else None
        if normaliser is None:
            raise unsupported(f"{where}.type", kind, ITEM_TYPES)
        items.append(normaliser(item, where))
    return items
