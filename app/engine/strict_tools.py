"""The `strict` of a client's function tool: what Ferry sends upstream, and so what every
Response echoes.

OpenAI's Responses API treats a function tool sent without `strict` as strict when its
schema can be: it normalises the schema into strict mode where possible and falls back to
non-strict, best-effort calling where not. Ferry does not rewrite schemas (that changes the
arguments the model writes), so a tool without `strict` is sent `strict: true` when its
`parameters` already meet strict mode's rules — every object lists each of its properties
in `required` and closes `additionalProperties`, and nothing strict mode rejects is used —
and `strict: false` otherwise. A client's own `true` or `false` is sent as given. The value
is settled once, when the request is accepted, and stored with it: the chat request and the
echoed tools read the same field. (An upstream may ignore `strict`; chat-completions
upstreams default to non-strict.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from app.shapes import JsonObject

# JSON Schema keywords OpenAI's strict mode does not accept.
_NOT_IN_STRICT_MODE = frozenset(
    {
        "allOf",
        "oneOf",
        "not",
        "if",
        "then",
        "else",
        "patternProperties",
        "dependentRequired",
        "dependentSchemas",
        "unevaluatedProperties",
    }
)


def settle_strict(tools: list[JsonObject]) -> list[JsonObject]:
    """The tools with each function tool's `strict` decided (see the module docstring)."""
    return [
        {**tool, "strict": sent_strict(tool)} if tool.get("type") == "function" else tool
        for tool in tools
    ]


def sent_strict(tool: JsonObject) -> bool:
    strict = tool.get("strict")
    if isinstance(strict, bool):
        return strict
    return fits_strict_mode(tool.get("parameters"))


def fits_strict_mode(parameters: Any) -> bool:
    """Whether a parameters schema can be used in strict mode as it is. No parameters at all
    is not strict: there is nothing to hold the model to."""
    if not isinstance(parameters, dict) or parameters.get("type") != "object":
        return False
    return _fits(parameters)


def _fits(schema: Any) -> bool:
    if not isinstance(schema, dict) or _NOT_IN_STRICT_MODE & schema.keys():
        return False
    if _is_object(schema):
        properties = schema.get("properties", {})
        required = schema.get("required", [])
        if not isinstance(properties, dict) or not isinstance(required, list):
            return False
        if schema.get("additionalProperties") is not False or set(required) != set(properties):
            return False
    return all(_fits(child) for child in _subschemas(schema))


def _is_object(schema: JsonObject) -> bool:
    kind = schema.get("type")
    return (
        kind == "object"
        or (isinstance(kind, list) and "object" in kind)
        or ("properties" in schema)
    )


def _subschemas(schema: JsonObject) -> Iterator[Any]:
    for key in ("properties", "$defs", "definitions"):
        value = schema.get(key)
        if isinstance(value, dict):
            yield from value.values()
    items = schema.get("items")
    if isinstance(items, list):
        yield from items
    elif items is not None:
        yield items
    for key in ("anyOf", "prefixItems"):
        value = schema.get(key)
        if isinstance(value, list):
            yield from value
