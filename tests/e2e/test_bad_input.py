"""Bad requests get a 400/413 in the OpenAI error envelope, and leave no row behind."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import psycopg
import pytest

# A well-formed MCP tool; the test API allows only the suite's own MCP server.
MCP = {
    "type": "mcp",
    "server_label": "calc",
    "server_url": "http://127.0.0.1:9/mcp",
    "require_approval": "never",
}


def count_responses(db: psycopg.Connection[dict[str, Any]]) -> int:
    row = db.execute("SELECT count(*) AS n FROM responses").fetchone()
    assert row is not None
    return int(row["n"])


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "hi"}, "model"),
        ({"model": "demo", "input": 42}, "input"),
        ({"model": "demo", "input": {"role": "user"}}, "input"),
        ({"model": "demo", "input": [{"type": "mystery_item"}]}, "input[0].type"),
        ({"model": "demo", "input": [{"role": "wizard", "content": "hi"}]}, "input[0].role"),
        (
            {"model": "demo", "input": [{"role": "user", "content": [{"type": "audio"}]}]},
            "input[0].content[0].type",
        ),
        (
            {"model": "demo", "input": [{"type": "function_call_output", "output": "x"}]},
            "input[0].call_id",
        ),
        (
            {"model": "demo", "input": "hi", "stream_options": {"include_obfuscation": False}},
            "stream_options",
        ),
        ({"model": "demo", "input": "hi", "temperature": 3}, "temperature"),
        ({"model": "demo"}, "input"),
        ({"model": "demo", "input": [], "instructions": "Be brief."}, "input"),
        ({"model": "demo", "input": "hi", "tools": [{"type": "function"}]}, "tools[0].name"),
        ({"model": "demo", "input": "hi", "tool_choice": "sometimes"}, "tool_choice"),
        ({"model": "demo", "input": "hi", "no_such_parameter": 1}, "no_such_parameter"),
        (
            {
                "model": "demo",
                "input": "hi",
                "tools": [MCP | {"server_url": "http://elsewhere.test/mcp"}],
            },
            "tools[0].server_url",
        ),
        (
            {"model": "demo", "input": "hi", "tools": [MCP | {"require_approval": "sometimes"}]},
            "tools[0].require_approval",
        ),
        (
            {
                "model": "demo",
                "input": "hi",
                "tools": [MCP | {"require_approval": {"never": {"tool_names": "add"}}}],
            },
            "tools[0].require_approval.never.tool_names",
        ),
        ({"model": "demo", "input": "hi", "tools": [MCP, MCP]}, "tools[1].server_label"),
        ({"model": "demo", "input": "hi", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        # A registered server-side tool's name is not free for a client tool.
        (
            {
                "model": "demo",
                "input": "hi",
                "tools": [{"type": "function", "name": "lookup_weather"}],
            },
            "tools[0].name",
        ),
    ],
)
def test_invalid_request_is_rejected_with_param(
    client: openai.OpenAI,
    db: psycopg.Connection[dict[str, Any]],
    body: dict[str, Any],
    param: str,
) -> None:
    before = count_responses(db)
    with pytest.raises(openai.BadRequestError) as info:
        client.post("/responses", body=body, cast_to=httpx.Response)
    error = info.value.body
    assert isinstance(error, dict)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["message"]
    assert info.value.response.headers["x-should-retry"] == "false"
    assert count_responses(db) == before


def test_sdk_rejects_missing_model(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(input="hi", extra_body={"model": None})  # type: ignore[call-overload]
    assert info.value.body["param"] == "model"  # type: ignore[index]


def test_invalid_json_is_a_400_envelope(
    api_url: str, db: psycopg.Connection[dict[str, Any]]
) -> None:
    before = count_responses(db)
    reply = httpx.post(
        f"{api_url}/v1/responses",
        content=b'{"model": "demo", "input": ',
        headers={"content-type": "application/json"},
    )
    assert reply.status_code == 400
    assert reply.json()["error"]["type"] == "invalid_request_error"
    assert reply.json()["error"]["code"] == "invalid_json"
    assert set(reply.json()["error"]) == {"message", "type", "param", "code"}
    assert count_responses(db) == before


def test_body_over_the_limit_is_413(api_url: str, db: psycopg.Connection[dict[str, Any]]) -> None:
    before = count_responses(db)
    oversized = {"model": "demo", "input": "x" * (4 * 1024 * 1024 + 1)}
    reply = httpx.post(f"{api_url}/v1/responses", json=oversized, timeout=30)
    assert reply.status_code == 413
    assert reply.json()["error"]["code"] == "body_too_large"
    assert count_responses(db) == before


def test_unknown_route_is_a_404_envelope(api_url: str) -> None:
    reply = httpx.get(f"{api_url}/v1/nothing-here")
    assert reply.status_code == 404
    assert set(reply.json()["error"]) == {"message", "type", "param", "code"}
