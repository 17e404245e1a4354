"""The tool branches of the loop: registered HTTP tools run by the loop (one, several at
once, failing), client function calls handed back, mixed turns, and the limits on tool
calls and model turns."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from app.engine.run_state import output_of_steps
from app.statuses import ResponseStatus, StepKind, StepStatus
from tests.support.event_types import message_events
from tests.support.memory_store import MemoryStore
from tests.support.schema import assert_valid_events, assert_valid_response
from tests.unit.harness import Harness
from tests.unit.streams import WAIT_S, assert_numbered_from, assert_well_formed, done_items
from tests.unit.tool_host import ToolCallSeen, ToolHost
from tests.unit.upstream import (
    Hold,
    Reply,
    ScriptedUpstream,
    TokenUsage,
    ToolCall,
    call_chunks,
    calls_reply,
    completion,
    last_message,
    text_chunks,
    text_reply,
)

CLIENT_TOOL = {"type": "function", "name": "client_fn", "parameters": {"type": "object"}}
WEATHER = ToolCall("lookup_weather", {"city": "Oslo"}, "call_oslo")
TIME = ToolCall("current_time", {}, "call_time")


def types(output: list[dict[str, Any]]) -> list[str]:
    return [item["type"] for item in output]


async def test_server_tool_round(
    harness: Harness, upstream: ScriptedUpstream, tools: ToolHost
) -> None:
    upstream.then(
        calls_reply(WEATHER, usage=TokenUsage(10, 5)),
        text_reply("It is 21", " degrees.", usage=TokenUsage(30, 4)),
    )

    run = await harness.run({"model": "m", "input": "Weather in Oslo?"})

    assert run.final.status == ResponseStatus.COMPLETED
    assert types(run.output) == ["function_call", "function_call_output", "message"]
    call, result, message = run.output
    assert call["call_id"] == "call_oslo"
    assert call["name"] == "lookup_weather"
    assert json.loads(call["arguments"]) == {"city": "Oslo"}
    assert call["status"] == "completed"
    assert result["call_id"] == "call_oslo"
    assert result["status"] == "completed"
    assert json.loads(result["output"]) == {"city": "Oslo", "temp_c": 21}
    assert message["content"][0]["text"] == "It is 21 degrees."

    # The tool got the arguments, the call id as Idempotency-Key, and its own headers.
    [seen] = tools.calls
    assert seen.tool == "lookup_weather"
    assert seen.arguments == {"city": "Oslo"}
    assert seen.idempotency_key == "call_oslo"
    assert seen.headers["x-ferry-response-id"] == run.final.id
    assert seen.headers["authorization"] == "Bearer tool-secret"

    # The model saw its call and the tool's output in the second turn.
    first, second = upstream.requests
    assert second["messages"][0] == first["messages"][0]
    assert second["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_oslo",
                    "type": "function",
                    "function": {"name": "lookup_weather", "arguments": call["arguments"]},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_oslo", "content": result["output"]},
    ]

    # Usage is the sum over both turns.
    assert run.final.usage == TokenUsage(40, 9).responses()

    assert run.types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.output_item.done",
        *message_events(deltas=2),
        "response.completed",
    ]
    assert (
        "".join(e["delta"] for e in run.of_type("response.function_call_arguments.delta"))
        == (call["arguments"])
    )
    assert [e["output_index"] for e in run.of_type("response.output_item.done")] == [0, 1, 2]
    assert done_items(run.events) == run.output
    assert_well_formed(run.events)
    assert_valid_events(run.events)
    assert_valid_response(run.response)

    assert [(s.ordinal, s.kind, s.status) for s in run.steps] == [
        (0, StepKind.MODEL_CALL, StepStatus.COMPLETED),
        (1, StepKind.TOOL_CALL, StepStatus.COMPLETED),
        (2, StepKind.MODEL_CALL, StepStatus.COMPLETED),
    ]
    assert run.steps[1].request == {
        "type": "function_call",
        "name": "lookup_weather",
        "arguments": call["arguments"],
        "call_id": "call_oslo",
    }
    assert output_of_steps(run.steps) == run.output


async def test_parallel_calls_run_at_once(
    harness: Harness, upstream: ScriptedUpstream, tools: ToolHost
) -> None:
    both_arrived = asyncio.Event()
    weather, time = tools.handlers["lookup_weather"], tools.handlers["current_time"]

    def after_both(answer: Any) -> Any:
        async def handler(call: ToolCallSeen) -> httpx.Response:
            if len(tools.calls) == 2:
                both_arrived.set()
            # Neither call is answered before the other has arrived: they run together.
            async with asyncio.timeout(WAIT_S):
                await both_arrived.wait()
            response: httpx.Response = await answer(call)
            return response

        return handler

    tools.answer("lookup_weather", after_both(weather))
    tools.answer("current_time", after_both(time))
    upstream.then(calls_reply(WEATHER, TIME), text_reply("Done."))

    run = await harness.run({"model": "m", "input": "Weather and time?"})

    assert run.final.status == ResponseStatus.COMPLETED
    assert types(run.output) == [
        "function_call",
        "function_call",
        "function_call_output",
        "function_call_output",
        "message",
    ]
    calls, outputs = run.output[:2], run.output[2:4]
    assert [c["call_id"] for c in calls] == ["call_oslo", "call_time"]
    assert [o["call_id"] for o in outputs] == ["call_oslo", "call_time"]
    assert outputs[1]["output"] == "12:00"
    assert sorted(c.idempotency_key for c in tools.calls) == ["call_oslo", "call_time"]
    # Both outputs are announced before either is done.
    tool_events = [
        (e["type"], e["output_index"])
        for e in run.events
        if e["type"].startswith("response.output_item") and e["output_index"] in (2, 3)
    ]
    assert tool_events == [
        ("response.output_item.added", 2),
        ("response.output_item.added", 3),
        ("response.output_item.done", 2),
        ("response.output_item.done", 3),
    ]
    # Both calls join one assistant message in the next turn, then both outputs.
    messages = upstream.requests[1]["messages"]
    assert [c["id"] for c in messages[1]["tool_calls"]] == ["call_oslo", "call_time"]
    assert [(m["role"], m["tool_call_id"]) for m in messages[2:]] == [
        ("tool", "call_oslo"),
        ("tool", "call_time"),
    ]
    assert [s.kind for s in run.steps] == [
        StepKind.MODEL_CALL,
        StepKind.TOOL_CALL,
        StepKind.TOOL_CALL,
        StepKind.MODEL_CALL,
    ]
    assert_well_formed(run.events)
    assert_valid_events(run.events)


async def test_text_then_a_call_in_one_turn(
    harness: Harness, upstream: ScriptedUpstream, tools: ToolHost
) -> None:
    upstream.then(
        completion(*text_chunks("Let me look."), *call_chunks(WEATHER), finish_reason="tool_calls"),
        text_reply("Sunny."),
    )

    run = await harness.run({"model": "m", "input": "Weather?"})

    assert types(run.output) == ["message", "function_call", "function_call_output", "message"]
    assert [item["status"] for item in run.output] == ["completed"] * 4
    # The text and the call are one assistant message for the upstream.
    assert upstream.requests[1]["messages"][1]["content"] == "Let me look."
    assert upstream.requests[1]["messages"][1]["tool_calls"][0]["id"] == "call_oslo"
    assert_well_formed(run.events)


async def test_finished_items_are_visible_while_a_tool_runs(
    harness: Harness, upstream: ScriptedUpstream, tools: ToolHost, store: MemoryStore
) -> None:
    """GET assembles an unfinished response from its steps: the call shows before its output."""
    release = asyncio.Event()

    async def held(call: ToolCallSeen) -> httpx.Response:
        await release.wait()
        return httpx.Response(200, text="12:00")

    tools.answer("current_time", held)
    upstream.then(calls_reply(TIME), text_reply("Noon."))
    stored = harness.seed({"model": "m", "input": "Time?"})
    async with harness.started(stored) as (task, _):
        async with asyncio.timeout(WAIT_S):
            await tools.arrived.wait()
        shown = output_of_steps(store.step_list(stored.id))
        assert types(shown) == ["function_call"]
        assert store.response(stored.id).status == ResponseStatus.IN_PROGRESS
        release.set()
        async with asyncio.timeout(WAIT_S):
            final = await task
    assert final.status == ResponseStatus.COMPLETED
    assert types(final.output or []) == ["function_call", "function_call_output", "message"]


async def test_items_a_turn_finished_are_visible_before_the_turn_ends(
    harness: Harness, upstream: ScriptedUpstream, store: MemoryStore
) -> None:
    hold = Hold()
    upstream.then(
        Reply(
            [
                *text_chunks("Looking."),
                *call_chunks(TIME),  # the call's start closes the message
                hold,
            ]
        )
    )
    stored = harness.seed({"model": "m", "input": "Time?"})
    async with harness.started(stored):
        async with asyncio.timeout(WAIT_S):
            await hold.reached.wait()
            # Recorded on a timer, within EVENT_FLUSH_INTERVAL_S of the item's end, while the
            # turn still goes on: polled, bounded by the timeout.
            while not output_of_steps(store.step_list(stored.id)):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        [step] = store.step_list(stored.id)
        assert step.status == StepStatus.IN_PROGRESS
        shown = output_of_steps([step])
        assert types(shown) == ["message"]
        assert shown[0]["content"][0]["text"] == "Looking."


async def test_a_quick_turn_records_its_items_only_once_at_its_end(
    harness: Harness, upstream: ScriptedUpstream, store: MemoryStore
) -> None:
    upstream.then(text_reply("Quick."))

    run = await harness.run({"model": "m", "input": "Hi"})

    assert run.final.status == ResponseStatus.COMPLETED
    writes = [write.name for write in store.writes if write.response_id == run.final.id]
    assert "record_step_items" not in writes
    assert writes.count("finish_step") == 1


async def test_a_client_function_call_ends_the_response(
    harness: Harness, upstream: ScriptedUpstream, tools: ToolHost
) -> None:
    upstream.then(calls_reply(ToolCall("client_fn", {"n": 1}, "call_client")))

    run = await harness.run({"model": "m", "input": "Call it", "tools": [CLIENT_TOOL]})

    assert run.final.status == ResponseStatus.COMPLETED
    [call] = run.output
    assert call["type"] == "function_call"
    assert call["name"] == "client_fn"
    assert call["call_id"] == "call_client"
    assert call["status"] == "completed"
    assert tools.calls == []
    assert len(upstream.requests) == 1
    # The client's tool is offered first, then the registered ones.
    offered = [tool["function"]["name"] for tool in upstream.requests[0]["tools"]]
    assert offered[0] == "client_fn"
    assert "lookup_weather" in offered
    assert run.types[-2:] == ["response.output_item.done", "response.completed"]
    assert_well_formed(run.events)
    assert_valid_events(run.events)
    assert_valid_response(run.response)


async def test_client_round_trip_with_previous_response_id(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    upstream.then(
        calls_reply(ToolCall("client_fn", {"n": 1}, "call_client")),
        text_reply("The answer is 42."),
    )
    first = await harness.run({"model": "m", "input": "Call it", "tools": [CLIENT_TOOL]})

    second = await harness.run(
        {
            "model": "m",
            "previous_response_id": first.final.id,
            "input": [{"type": "function_call_output", "call_id": "call_client", "output": "42"}],
            "tools": [CLIENT_TOOL],
        }
    )

    assert second.final.status == ResponseStatus.COMPLETED
    assert second.output[0]["content"][0]["text"] == "The answer is 42."
    messages = upstream.requests[1]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[1]["tool_calls"][0]["id"] == "call_client"
    assert last_message(upstream.requests[1]) == {
        "role": "tool",
        "tool_call_id": "call_client",
        "content": "42",
    }


async def test_a_turn_mixing_client_and_server_calls_goes_back_to_the_client(
    harness: Harness, upstream: ScriptedUpstream, tools: ToolHost
) -> None:
    upstream.then(calls_reply(WEATHER, ToolCall("client_fn", {}, "call_client")))

    run = await harness.run({"model": "m", "input": "Both", "tools": [CLIENT_TOOL]})

    assert run.final.status == ResponseStatus.COMPLETED
    assert [(i["type"], i["name"]) for i in run.output] == [
        ("function_call", "lookup_weather"),
        ("function_call", "client_fn"),
    ]
    assert tools.calls == []
    assert len(upstream.requests) == 1
    assert [s.kind for s in run.steps] == [StepKind.MODEL_CALL]


@pytest.mark.parametrize(
    ("tool", "answer", "error"),
    [
        ("broken_tool", None, "tool broken_tool returned HTTP 500: kaput"),
        ("lookup_weather", httpx.ReadTimeout("slow"), "tool lookup_weather timed out after 5s"),
        (
            "lookup_weather",
            httpx.ConnectError("refused"),
            "tool lookup_weather could not be reached: ConnectError",
        ),
    ],
)
async def test_a_failing_tool_is_an_error_the_model_sees(
    harness: Harness,
    upstream: ScriptedUpstream,
    tools: ToolHost,
    tool: str,
    answer: Exception | None,
    error: str,
) -> None:
    if answer is not None:

        async def failing(call: ToolCallSeen) -> httpx.Response:
            raise answer

        tools.answer(tool, failing)
    upstream.then(
        calls_reply(ToolCall(tool, {"city": "Oslo"}, "call_1")),
        text_reply("Sorry."),
    )

    run = await harness.run({"model": "m", "input": "Try"})

    assert run.final.status == ResponseStatus.COMPLETED
    result = run.output[1]
    assert result["status"] == "completed"
    assert json.loads(result["output"]) == {"error": error}
    assert last_message(upstream.requests[1])["content"] == result["output"]
    assert len(tools.calls) == 1


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ("{not json", "arguments are not valid JSON: {not json"),
        ("[1, 2]", "arguments must be a JSON object"),
    ],
)
async def test_bad_arguments_are_answered_without_calling_the_tool(
    harness: Harness, upstream: ScriptedUpstream, tools: ToolHost, arguments: str, error: str
) -> None:
    upstream.then(
        calls_reply(ToolCall("lookup_weather", arguments, "call_1")),
        text_reply("Oops."),
    )

    run = await harness.run({"model": "m", "input": "Try"})

    assert json.loads(run.output[1]["output"]) == {"error": error}
    assert tools.calls == []
    assert run.final.status == ResponseStatus.COMPLETED


async def test_max_tool_calls_skips_the_calls_past_it(
    harness: Harness, upstream: ScriptedUpstream, tools: ToolHost
) -> None:
    upstream.then(calls_reply(TIME, WEATHER))

    run = await harness.run({"model": "m", "input": "Both", "max_tool_calls": 1})

    assert run.final.status == ResponseStatus.INCOMPLETE
    assert run.final.incomplete_details == {"reason": "max_tool_calls"}
    assert [c.tool for c in tools.calls] == ["current_time"]
    assert len(upstream.requests) == 1
    assert types(run.output) == [
        "function_call",
        "function_call",
        "function_call_output",
        "function_call_output",
    ]
    ran, skipped = run.output[2:]
    assert (ran["call_id"], ran["status"], ran["output"]) == ("call_time", "completed", "12:00")
    assert skipped["call_id"] == "call_oslo"
    assert skipped["status"] == "incomplete"
    assert json.loads(skipped["output"]) == {
        "error": "not run: the response reached max_tool_calls (1)"
    }
    assert [(s.kind, s.status) for s in run.steps] == [
        (StepKind.MODEL_CALL, StepStatus.COMPLETED),
        (StepKind.TOOL_CALL, StepStatus.COMPLETED),
        (StepKind.TOOL_CALL, StepStatus.CANCELLED),
    ]
    assert run.steps[2].request is not None and "skipped" in run.steps[2].request
    assert run.events[-1]["type"] == "response.incomplete"
    assert_well_formed(run.events)
    assert_valid_events(run.events)
    assert_valid_response(run.response)


async def test_max_tool_calls_counts_across_turns(
    harness: Harness, upstream: ScriptedUpstream, tools: ToolHost
) -> None:
    upstream.then(calls_reply(TIME), calls_reply(WEATHER))

    run = await harness.run({"model": "m", "input": "One, then another", "max_tool_calls": 1})

    assert run.final.status == ResponseStatus.INCOMPLETE
    assert run.final.incomplete_details == {"reason": "max_tool_calls"}
    assert [c.tool for c in tools.calls] == ["current_time"]
    assert len(upstream.requests) == 2
    assert run.output[-1]["call_id"] == "call_oslo"
    assert run.output[-1]["status"] == "incomplete"


async def test_max_model_turns_ends_incomplete(
    harness: Harness, upstream: ScriptedUpstream, tools: ToolHost
) -> None:
    harness.configure(max_model_turns=2)
    # A model that never stops calling tools.
    upstream.responder = lambda body: calls_reply(
        ToolCall("current_time", {}, f"call_{len(upstream.requests)}"), usage=TokenUsage(10, 5)
    )

    run = await harness.run({"model": "m", "input": "Loop forever"})

    assert run.final.status == ResponseStatus.INCOMPLETE
    assert run.final.incomplete_details == {"reason": "max_turns"}
    assert len(upstream.requests) == 2
    assert [c.idempotency_key for c in tools.calls] == ["call_1", "call_2"]
    assert types(run.output) == ["function_call", "function_call_output"] * 2
    assert run.final.usage == TokenUsage(20, 10).responses()
    assert_well_formed(run.events)
    assert_numbered_from(run.events, 0)
