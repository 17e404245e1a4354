"""The loop with a reasoning model: a `reasoning` item before each turn's message or calls,
whichever way the upstream sends the reasoning (either delta field, a plain JSON completion,
`<think>` tags in the content), through tool rounds, a client leaving and a crash."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.engine.loop import RunMode
from app.statuses import ResponseStatus, StepKind
from tests.support.event_types import message_events, reasoning_events
from tests.support.memory_store import at_write
from tests.support.schema import assert_valid_events, assert_valid_response
from tests.unit.harness import Harness
from tests.unit.streams import WAIT_S, assert_numbered_from, assert_well_formed
from tests.unit.upstream import (
    Hold,
    ScriptedUpstream,
    TokenUsage,
    ToolCall,
    call_chunks,
    completion,
    json_reply,
    reasoning_chunks,
    text_chunks,
)

WEATHER = ToolCall("lookup_weather", {"city": "Oslo"}, "call_oslo")
BACKGROUND = {"model": "m", "input": "Weather?", "background": True, "stream": True}


def texts(output: list[dict[str, Any]], item_type: str) -> list[str]:
    return [part["text"] for i in output if i["type"] == item_type for part in i["content"]]


@pytest.mark.parametrize("key", ["reasoning_content", "reasoning"])
async def test_reasoning_comes_out_as_a_reasoning_item_before_the_message(
    harness: Harness, upstream: ScriptedUpstream, key: str
) -> None:
    usage = TokenUsage(prompt_tokens=8, completion_tokens=7, reasoning_tokens=5)
    upstream.then(
        completion(*reasoning_chunks("Greet ", "back.", key=key), *text_chunks("Hi!"), usage=usage)
    )

    run = await harness.run({"model": "m", "input": "Hello"})

    assert run.types == [
        "response.created",
        "response.in_progress",
        *reasoning_events(deltas=2),
        *message_events(deltas=1),
        "response.completed",
    ]
    assert_numbered_from(run.events, 0)
    assert_well_formed(run.events)
    assert_valid_events(run.events)
    assert_valid_response(run.response)
    reasoning, message = run.output
    assert reasoning["type"] == "reasoning"
    assert reasoning["status"] == "completed"
    assert reasoning["summary"] == []
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "Greet back."}]
    assert message["content"][0]["text"] == "Hi!"
    assert run.final.usage is not None
    assert run.final.usage["output_tokens_details"] == {"reasoning_tokens": 5}
    assert run.events[-1]["response"]["output"] == run.output
    # Reasoning is not sent back to the upstream as a message: only the user's turn goes.
    assert [m["role"] for m in upstream.requests[0]["messages"]] == ["user"]


async def test_each_turn_of_a_tool_round_reasons_before_it_acts(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    upstream.then(
        completion(
            *reasoning_chunks("Look it up."), *call_chunks(WEATHER), finish_reason="tool_calls"
        ),
        completion(*reasoning_chunks("Report it."), *text_chunks("Sunny.")),
    )

    run = await harness.run({"model": "m", "input": "Weather?"})

    assert run.final.status == ResponseStatus.COMPLETED
    assert [i["type"] for i in run.output] == [
        "reasoning",
        "function_call",
        "function_call_output",
        "reasoning",
        "message",
    ]
    assert texts(run.output, "reasoning") == ["Look it up.", "Report it."]
    added = run.of_type("response.output_item.added")
    assert [e["output_index"] for e in added] == [0, 1, 2, 3, 4]
    assert_well_formed(run.events)
    assert_valid_events(run.events)
    # The second turn's request carries the call and its result, not the reasoning.
    assert [m["role"] for m in upstream.requests[1]["messages"]] == ["user", "assistant", "tool"]


async def test_a_plain_json_completion_streams_as_one_chunk(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    call = {
        "id": "call_oslo",
        "type": "function",
        "function": {"name": "lookup_weather", "arguments": '{"city": "Oslo"}'},
    }
    upstream.then(
        json_reply(
            {"role": "assistant", "reasoning": "Look it up.", "tool_calls": [call]}, "tool_calls"
        ),
        json_reply({"role": "assistant", "reasoning_content": "Done.", "content": "Sunny."}),
    )

    run = await harness.run({"model": "m", "input": "Weather?"})

    assert run.final.status == ResponseStatus.COMPLETED
    assert [i["type"] for i in run.output] == [
        "reasoning",
        "function_call",
        "function_call_output",
        "reasoning",
        "message",
    ]
    assert run.output[1]["call_id"] == "call_oslo"
    assert run.output[1]["arguments"] == '{"city": "Oslo"}'
    assert texts(run.output, "reasoning") == ["Look it up.", "Done."]
    assert texts(run.output, "message") == ["Sunny."]
    assert len(run.of_type("response.reasoning_text.delta")) == 2  # one for each whole reply
    assert run.final.usage is not None  # each reply's usage was read
    assert_well_formed(run.events)
    assert_valid_events(run.events)


@pytest.mark.parametrize("think_tags", [True, False])
async def test_think_tags_become_reasoning_only_when_the_setting_says_so(
    harness: Harness, upstream: ScriptedUpstream, think_tags: bool
) -> None:
    harness.configure(think_tags_as_reasoning=think_tags)
    pieces = ["<think>", "Greet", " back.</th", "ink>\n\nHi", "!"]
    upstream.then(completion(*text_chunks(*pieces)))

    run = await harness.run({"model": "m", "input": "Hello"})

    if think_tags:
        assert texts(run.output, "reasoning") == ["Greet back."]
        assert texts(run.output, "message") == ["Hi!"]
    else:
        assert [i["type"] for i in run.output] == ["message"]
        assert texts(run.output, "message") == ["".join(pieces)]
    assert_valid_events(run.events)


async def test_a_client_leaving_mid_reasoning_keeps_it_incomplete(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    hold = Hold()
    upstream.then(completion(*reasoning_chunks("Half a "), hold, *reasoning_chunks("thought")))
    stored = harness.seed({"model": "m", "input": "Hello", "stream": True})

    async with harness.started(stored) as (task, sink):
        await asyncio.wait_for(hold.reached.wait(), WAIT_S)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    final = harness.store.response(stored.id)
    assert final.status == ResponseStatus.CANCELLED
    [reasoning] = final.output or []
    assert reasoning["status"] == "incomplete"
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "Half a "}]
    assert sink.types[-1] == "response.reasoning_text.delta"


async def test_reasoning_cut_off_by_a_crash_is_closed_and_the_turn_redone(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    upstream.then(
        completion(*reasoning_chunks("First ", "try."), *text_chunks("One.")),
        completion(*reasoning_chunks("Second ", "try."), *text_chunks("Two.")),
    )
    stored = harness.seed(BACKGROUND, RunMode.WORKER)
    # Dies as the turn ends, before its step is recorded as done; the log it left was
    # flushed only up to the first reasoning delta (a batch written on the interval).
    store, logged = await harness.crash(stored, at_write("finish_step"))
    first_delta = next(
        n for n, e in enumerate(logged) if e["type"] == "response.reasoning_text.delta"
    )
    cut_log = logged[: first_delta + 1]

    run, log = await harness.resume(store, stored.id, cut_log)

    assert run.final.status == ResponseStatus.COMPLETED
    assert texts(run.output, "reasoning") == ["Second try."]
    assert texts(run.output, "message") == ["Two."]
    closing = log[len(cut_log) : len(cut_log) + 3]
    assert [e["type"] for e in closing] == [
        "response.reasoning_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    assert closing[-1]["item"]["status"] == "incomplete"
    assert closing[-1]["item"]["content"] == [{"type": "reasoning_text", "text": "First "}]
    assert_numbered_from(log, 0)
    assert_well_formed(log)
    assert_valid_events(log)
    # The redone turn's items come after every index the stream announced.
    added = [e["output_index"] for e in log if e["type"] == "response.output_item.added"]
    assert added == [0, 1, 2]
    model_steps = [s for s in run.steps if s.kind == StepKind.MODEL_CALL]
    assert len(model_steps) == 2


@pytest.mark.parametrize(
    ("opened", "text_done"),
    [
        (reasoning_chunks("Half a "), "response.reasoning_text.done"),
        ([*reasoning_chunks("Thought."), *text_chunks("Hel")], "response.output_text.done"),
    ],
    ids=["reasoning", "message"],
)
async def test_the_response_timeout_closes_the_open_part_then_its_item(
    harness: Harness, upstream: ScriptedUpstream, opened: list[Any], text_done: str
) -> None:
    harness.configure(response_timeout_s=0.05)
    upstream.then(completion(*opened, Hold()))  # never released: only the deadline ends it

    run = await harness.run({"model": "m", "input": "hi"})

    assert run.final.status == ResponseStatus.FAILED
    cut = run.output[-1]
    assert cut["status"] == "incomplete"
    assert run.types[-5:] == [
        text_done,
        "response.content_part.done",
        "response.output_item.done",
        "error",
        "response.failed",
    ]
    [part] = cut["content"]
    assert run.events[-5]["text"] == part["text"]
    assert run.events[-4]["part"] == part
    assert run.events[-3]["item"] == cut
    assert_well_formed(run.events)
    assert_valid_events(run.events)
