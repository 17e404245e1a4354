"""The multi-step tool loop, the same in every mode: blocking, inline SSE, background poll,
background stream and flex. The demo upstream calls tools when asked with [[call:...]], a
real HTTP tool server answers, and a real worker runs the deferred modes."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any

import openai
import psycopg
import pytest

from tests.fakes.upstream.spy import requests_mentioning
from tests.support.event_types import MCP_EVENTS
from tests.support.mcp_server import McpTestServer
from tests.support.schema import assert_valid_events
from tests.support.settings import TEST_MAX_MODEL_TURNS
from tests.support.tool_server import ToolServer
from tests.support.waiting import wait_for

MODES = ["blocking", "inline_sse", "background_poll", "background_stream", "flex"]
CLIENT_TOOL = {"type": "function", "name": "client_fn", "parameters": {"type": "object"}}

pytestmark = [pytest.mark.usefixtures("worker"), pytest.mark.parametrize("mode", MODES)]


def create(client: openai.OpenAI, mode: str, **params: Any) -> tuple[dict[str, Any], list[Any]]:
    """Create a response in `mode`, wait for its end; (final Response as JSON, events)."""
    params.setdefault("model", "demo")
    events: list[dict[str, Any]] = []
    if mode in ("inline_sse", "background_stream"):
        with client.responses.create(
            stream=True, background=mode == "background_stream", **params
        ) as stream:
            events = [event.to_dict(mode="json") for event in stream]
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
        response_id = events[0]["response"]["id"]
    elif mode == "background_poll":
        response_id = client.responses.create(background=True, **params).id
    elif mode == "flex":
        response_id = client.responses.create(service_tier="flex", **params).id
    else:
        response_id = client.responses.create(**params).id

    def ended() -> dict[str, Any] | None:
        raw = client.responses.with_raw_response.retrieve(response_id).http_response.json()
        return raw if raw["status"] not in ("queued", "in_progress") else None

    final = wait_for(ended, timeout_s=30, what=f"{response_id} to end")
    if events:
        assert events[-1]["response"]["output"] == final["output"]
    return final, events


Ask = Callable[..., tuple[dict[str, Any], list[Any]]]


@pytest.fixture
def ask(client: openai.OpenAI, mode: str) -> Ask:
    """`create` in this test's mode, with a prompt no other test sends (so the demo's
    deterministic call ids differ per test too)."""

    def ask_once(prompt: str, **params: Any) -> tuple[dict[str, Any], list[Any]]:
        return create(client, mode, input=f"{prompt} ({secrets.token_hex(4)})", **params)

    return ask_once


def types(output: list[dict[str, Any]]) -> list[str]:
    return [item["type"] for item in output]


def text_of(output: list[dict[str, Any]]) -> str:
    return "".join(
        part["text"] for item in output if item["type"] == "message" for part in item["content"]
    )


def assert_each_call_seen_once(server: ToolServer, final: dict[str, Any]) -> None:
    calls = [item for item in final["output"] if item["type"] == "function_call"]
    seen = server.calls_for(final["id"])
    assert sorted(c.idempotency_key for c in seen) == sorted(c["call_id"] for c in calls)


def test_two_turn_server_tool_loop(
    ask: Ask, tool_server: ToolServer, db: psycopg.Connection[dict[str, Any]]
) -> None:
    final, events = ask('Weather? [[call:lookup_weather {"city": "Oslo"}]]')

    assert final["status"] == "completed"
    assert types(final["output"]) == ["function_call", "function_call_output", "message"]
    call, result, _ = final["output"]
    assert result["call_id"] == call["call_id"]
    assert json.loads(result["output"]) == {"city": "Oslo", "temp_c": 21}
    assert text_of(final["output"]) == f"Tool results: lookup_weather={result['output']}"
    assert_each_call_seen_once(tool_server, final)
    [seen] = tool_server.calls_for(final["id"])
    assert seen.arguments == {"city": "Oslo"}

    # Usage is the sum over both model turns.
    turns = db.execute(
        "SELECT usage FROM response_steps WHERE response_id = %s AND kind = 'model_call'"
        " ORDER BY ordinal",
        (final["id"],),
    ).fetchall()
    assert len(turns) == 2
    assert final["usage"]["output_tokens"] == sum(t["usage"]["output_tokens"] for t in turns)
    assert final["usage"]["input_tokens"] == sum(t["usage"]["input_tokens"] for t in turns)
    if events:
        added = [e["item"]["type"] for e in events if e["type"] == "response.output_item.added"]
        done = [e["item"]["type"] for e in events if e["type"] == "response.output_item.done"]
        assert added == done == ["function_call", "function_call_output", "message"]


def test_each_turn_reasons_before_its_calls_or_its_answer(
    ask: Ask, tool_server: ToolServer
) -> None:
    final, events = ask('Weather? [[call:lookup_weather {"city": "Oslo"}]] [[think]]')

    assert final["status"] == "completed"
    order = ["reasoning", "function_call", "function_call_output", "reasoning", "message"]
    assert types(final["output"]) == order
    first, _, result, second, _ = final["output"]
    assert first["content"][0]["text"].startswith("Thinking about: Weather? (")
    assert second["content"] == [
        {"type": "reasoning_text", "text": "Thinking about the tool results."}
    ]
    assert text_of(final["output"]) == f"Tool results: lookup_weather={result['output']}"
    assert_each_call_seen_once(tool_server, final)
    # Reasoning tokens are summed over both turns.
    thinking = sum(len(item["content"][0]["text"].split()) for item in (first, second))
    assert final["usage"]["output_tokens_details"]["reasoning_tokens"] == thinking
    if events:
        assert_valid_events(events)
        added = [e["item"]["id"] for e in events if e["type"] == "response.output_item.added"]
        assert added == [item["id"] for item in final["output"]]
        for item in (first, second):
            deltas = [
                e["delta"]
                for e in events
                if e["type"] == "response.reasoning_text.delta" and e["item_id"] == item["id"]
            ]
            assert "".join(deltas) == item["content"][0]["text"]


def test_parallel_server_tool_turn(ask: Ask, tool_server: ToolServer) -> None:
    final, _ = ask('[[call:lookup_weather {"city": "Rome"}]] [[call:current_time]]')
    assert final["status"] == "completed"
    assert types(final["output"]) == [
        "function_call",
        "function_call",
        "function_call_output",
        "function_call_output",
        "message",
    ]
    calls, outputs = final["output"][:2], final["output"][2:4]
    assert [o["call_id"] for o in outputs] == [c["call_id"] for c in calls]
    assert outputs[1]["output"] == "12:00"
    assert_each_call_seen_once(tool_server, final)


def test_client_function_call_round_trip(
    client: openai.OpenAI, upstream_url: str, mode: str
) -> None:
    marker = secrets.token_hex(4)
    first, _ = create(
        client, mode, input=f'[[call:client_fn {{"n": 1}}]] ({marker})', tools=[CLIENT_TOOL]
    )
    assert first["status"] == "completed"
    [call] = first["output"]
    assert call["type"] == "function_call"
    assert call["name"] == "client_fn"
    assert json.loads(call["arguments"]) == {"n": 1}

    second, _ = create(
        client,
        mode,
        previous_response_id=first["id"],
        input=[{"type": "function_call_output", "call_id": call["call_id"], "output": "42"}],
        tools=[CLIENT_TOOL],
    )
    assert second["status"] == "completed"
    assert second["previous_response_id"] == first["id"]
    assert text_of(second["output"]) == "Tool results: client_fn=42"
    # The upstream saw the whole chain: user message, assistant tool call, tool result.
    messages = requests_mentioning(upstream_url, marker)[-1]["body"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[1]["tool_calls"][0]["id"] == call["call_id"]
    assert messages[2]["tool_call_id"] == call["call_id"]


def test_mixed_turn_goes_back_to_the_client(ask: Ask, tool_server: ToolServer) -> None:
    final, _ = ask("[[call:lookup_weather]] [[call:client_fn]]", tools=[CLIENT_TOOL])
    assert final["status"] == "completed"
    assert [item["name"] for item in final["output"]] == ["lookup_weather", "client_fn"]
    assert tool_server.calls_for(final["id"]) == []


@pytest.mark.parametrize(
    ("tool", "error"),
    [("broken_tool", "returned HTTP 500: kaput"), ("slow_tool", "timed out after 0.3s")],
)
def test_failing_tool_is_an_error_the_model_sees(
    ask: Ask, tool_server: ToolServer, tool: str, error: str
) -> None:
    final, _ = ask(f"[[call:{tool}]]")
    assert final["status"] == "completed"
    output = json.loads(final["output"][1]["output"])
    assert error in output["error"]
    assert error in text_of(final["output"])
    assert_each_call_seen_once(tool_server, final)


def test_max_tool_calls_ends_incomplete(ask: Ask, tool_server: ToolServer) -> None:
    final, _ = ask("[[call:current_time]] [[call:lookup_weather]]", max_tool_calls=1)
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_tool_calls"}
    [seen] = tool_server.calls_for(final["id"])
    assert seen.tool == "time"
    outputs = [item for item in final["output"] if item["type"] == "function_call_output"]
    assert outputs[0]["output"] == "12:00"
    assert "max_tool_calls" in outputs[1]["output"]


def test_turn_limit_ends_incomplete(ask: Ask, tool_server: ToolServer) -> None:
    final, _ = ask("[[call:current_time]] [[then-call:current_time]]")
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_turns"}
    assert len(tool_server.calls_for(final["id"])) == TEST_MAX_MODEL_TURNS
    assert_each_call_seen_once(tool_server, final)


def mcp_tool(server: McpTestServer, **extra: Any) -> dict[str, Any]:
    return {
        "type": "mcp",
        "server_label": "calc",
        "server_url": server.url,
        "require_approval": "never",
        **extra,
    }


def test_mcp_round_trip(ask: Ask, mcp_server: McpTestServer) -> None:
    a, b = secrets.randbelow(1000), secrets.randbelow(1000)
    final, events = ask(
        f'[[call:add {{"a": {a}, "b": {b}}}]]',
        tools=[mcp_tool(mcp_server, allowed_tools=["add", "echo"])],
    )
    assert final["status"] == "completed"
    assert types(final["output"]) == ["mcp_list_tools", "mcp_call", "message"]
    listed, call, _ = final["output"]
    assert listed["server_label"] == "calc"
    assert sorted(t["name"] for t in listed["tools"]) == ["add", "echo"]
    assert call["name"] == "add"
    assert json.loads(call["arguments"]) == {"a": a, "b": b}
    assert call["output"] == str(a + b)
    assert call["error"] is None
    assert call["status"] == "completed"
    assert text_of(final["output"]) == f"Tool results: add={a + b}"
    assert len(mcp_server.calls_matching("add", {"a": a, "b": b})) == 1
    if events:
        kinds = [e["type"] for e in events]
        for expected in MCP_EVENTS:
            assert expected in kinds
        done = [e for e in events if e["type"] == "response.output_item.done"]
        assert [e["output_index"] for e in done] == [0, 1, 2]


def test_mcp_approval_round_trip(
    client: openai.OpenAI, mode: str, mcp_server: McpTestServer
) -> None:
    a, b = secrets.randbelow(1000), 1000 + secrets.randbelow(1000)
    tools = [mcp_tool(mcp_server, require_approval="always")]
    prompt = f'[[call:add {{"a": {a}, "b": {b}}}]] ({secrets.token_hex(4)})'
    first, events = create(client, mode, input=prompt, tools=tools)
    assert first["status"] == "completed"
    assert types(first["output"]) == ["mcp_list_tools", "mcp_approval_request"]
    request = first["output"][1]
    if events:
        shown = [e for e in events if e.get("item", {}).get("id") == request["id"]]
        assert [e["type"] for e in shown] == [
            "response.output_item.added",
            "response.output_item.done",
        ]
        assert shown[-1]["item"] == request

    approval = {"type": "mcp_approval_response", "approval_request_id": request["id"]}
    second, _ = create(
        client,
        mode,
        input=[{**approval, "approve": True}],
        previous_response_id=first["id"],
        tools=tools,
    )
    assert second["status"] == "completed"
    assert types(second["output"]) == ["mcp_list_tools", "mcp_call", "message"]
    call = second["output"][1]
    assert (call["approval_request_id"], call["output"]) == (request["id"], str(a + b))
    assert text_of(second["output"]) == f"Tool results: add={a + b}"
    assert len(mcp_server.calls_matching("add", {"a": a, "b": b})) == 1


def test_mcp_tool_error_is_seen_by_the_model(ask: Ask, mcp_server: McpTestServer) -> None:
    final, _ = ask('[[call:fail {"reason": "out of paper"}]]', tools=[mcp_tool(mcp_server)])
    call = final["output"][1]
    assert call["status"] == "failed"
    assert call["error"]["type"] == "mcp_tool_execution_error"
    assert "out of paper" in call["error"]["content"][0]["text"]
    assert "out of paper" in text_of(final["output"])


def test_every_step_is_persisted(ask: Ask, db: psycopg.Connection[dict[str, Any]]) -> None:
    final, _ = ask("[[call:current_time]] [[call:lookup_weather]]")
    steps = db.execute(
        "SELECT kind, status, completed_at IS NOT NULL AS ended FROM response_steps"
        " WHERE response_id = %s ORDER BY ordinal",
        (final["id"],),
    ).fetchall()
    assert [(s["kind"], s["status"], s["ended"]) for s in steps] == [
        ("model_call", "completed", True),
        ("tool_call", "completed", True),
        ("tool_call", "completed", True),
        ("model_call", "completed", True),
    ]
