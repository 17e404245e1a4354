"""The `strict` a client's function tool is sent upstream with: the client's own, else
strict exactly when the schema already fits strict mode (Ferry does not rewrite schemas)."""

from __future__ import annotations

from typing import Any

import pytest

from app.engine.chat.request import chat_completion_body
from app.engine.request import parse_create_request
from app.engine.resource import response_object
from app.engine.strict_tools import fits_strict_mode, settle_strict
from tests.support.memory_store import MemoryStore

CLOSED = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": ["integer", "null"]}},
    "required": ["city", "days"],
    "additionalProperties": False,
}


def closed(**changes: Any) -> dict[str, Any]:
    return {**CLOSED, **changes}


@pytest.mark.parametrize(
    ("schema", "fits"),
    [
        (CLOSED, True),
        ({"type": "object", "properties": {}, "additionalProperties": False}, True),
        (
            closed(
                properties={"where": {"$ref": "#/$defs/place"}},
                required=["where"],
                **{
                    "$defs": {
                        "place": {
                            "type": "object",
                            "properties": {"name": {"type": "string"}},
                            "required": ["name"],
                            "additionalProperties": False,
                        }
                    }
                },
            ),
            True,
        ),
        (None, False),  # no parameters: nothing to be strict about
        ({"type": "object"}, False),
        (closed(additionalProperties=True), False),
        (closed(required=["city"]), False),  # an optional property
        (
            closed(
                properties={"tags": {"type": "array", "items": {"type": "object"}}},
                required=["tags"],
            ),
            False,  # an open object deeper down
        ),
        (closed(properties={"x": {"oneOf": [{"type": "string"}]}}, required=["x"]), False),
        ({"type": "string"}, False),
    ],
    ids=[
        "closed",
        "empty-closed",
        "closed-defs",
        "none",
        "bare-object",
        "open",
        "optional-property",
        "open-nested",
        "one-of",
        "not-an-object",
    ],
)
def test_what_fits_strict_mode(schema: Any, fits: bool) -> None:
    assert fits_strict_mode(schema) is fits


def test_the_clients_own_value_wins_and_other_tools_are_untouched() -> None:
    mcp = {"type": "mcp", "server_label": "m"}
    tools = [
        {"type": "function", "name": "a", "parameters": {"type": "object"}, "strict": True},
        {"type": "function", "name": "b", "parameters": CLOSED, "strict": False},
        {"type": "function", "name": "c", "parameters": CLOSED},
        {"type": "function", "name": "d", "parameters": {"type": "object"}, "strict": None},
        mcp,
    ]

    settled = settle_strict(tools)

    assert [tool.get("strict") for tool in settled] == [True, False, True, False, None]
    assert settled[-1] is mcp
    assert "strict" not in tools[2]  # the request as sent is not changed


def test_the_echo_is_what_the_upstream_is_sent() -> None:
    body = {
        "model": "m",
        "input": "hi",
        "tools": [
            {"type": "function", "name": "loose", "parameters": {"type": "object"}},
            {"type": "function", "name": "tight", "parameters": CLOSED},
        ],
    }
    stored = MemoryStore().seed(body)

    sent = chat_completion_body(stored.request, [{"role": "user", "content": "hi"}])
    echoed = response_object(stored, [])["tools"]

    assert [tool["function"]["strict"] for tool in sent["tools"]] == [False, True]
    assert [tool["strict"] for tool in echoed] == [False, True]
    request, _ = parse_create_request(body)
    assert request.tools is not None
    assert [tool["strict"] for tool in request.tools] == [False, True]
