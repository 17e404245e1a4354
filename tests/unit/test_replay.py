"""`replay_events`: a finished response told again as a stream (flex streams), which must be
a valid event sequence telling the same story as the live one."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from app.engine.replay import replay_events
from app.shapes import Event
from tests.support.schema import assert_valid_events
from tests.unit.harness import Harness
from tests.unit.streams import assert_numbered_from, assert_well_formed, done_items
from tests.unit.upstream import (
    ScriptedUpstream,
    ToolCall,
    call_chunks,
    calls_reply,
    completion,
    cut,
    reasoning_chunks,
    scored_text_chunks,
    status,
    text_chunks,
    text_reply,
    token_logprob,
)

DELTA_TYPES = {
    "response.output_text.delta",
    "response.reasoning_text.delta",
    "response.function_call_arguments.delta",
}


def fold(types: list[str]) -> list[str]:
    """Event types with each run of deltas counted once: replay sends text as one delta."""
    out: list[str] = []
    for kind in types:
        if kind in DELTA_TYPES and out and out[-1] == kind:
            continue
        out.append(kind)
    return out


def check_replay(response: dict[str, Any]) -> list[Event]:
    events = replay_events(response)
    assert_numbered_from(events, 0)
    assert_well_formed(events)
    assert_valid_events(events)
    opening = events[0]["response"]
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    assert opening["status"] == "in_progress"
    assert opening["output"] == []
    assert opening["usage"] is None
    assert opening["id"] == response["id"]
    assert events[-1]["response"] == response
    assert done_items(events) == response["output"]
    return events


async def test_a_tool_round_replays_as_its_live_stream_told_it(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    call = ToolCall("lookup_weather", {"city": "Oslo"}, "call_oslo")
    upstream.then(
        calls_reply(call),
        text_reply("Sunny", " and ", "21."),
    )
    run = await harness.run({"model": "m", "input": "Weather?"})

    events = check_replay(run.response)

    assert events[-1]["type"] == "response.completed"
    assert fold([e["type"] for e in events]) == fold(run.types)
    [text] = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert text == "Sunny and 21."
    [arguments] = [
        e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"
    ]
    assert arguments == run.output[0]["arguments"]
    # The items announced are those of the live stream, in the same places.
    live_added = [
        (e["output_index"], e["item"]["id"]) for e in run.of_type("response.output_item.added")
    ]
    replay_added = [
        (e["output_index"], e["item"]["id"])
        for e in events
        if e["type"] == "response.output_item.added"
    ]
    assert replay_added == live_added


async def test_reasoning_replays_as_its_live_stream_told_it(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    call = ToolCall("lookup_weather", {"city": "Oslo"}, "call_oslo")
    upstream.then(
        completion(
            *reasoning_chunks("Need ", "the weather."),
            *call_chunks(call),
            finish_reason="tool_calls",
        ),
        completion(*reasoning_chunks("It is ", "sunny."), *text_chunks("Sunny.")),
    )
    run = await harness.run({"model": "m", "input": "Weather?"})
    assert [item["type"] for item in run.output] == [
        "reasoning",
        "function_call",
        "function_call_output",
        "reasoning",
        "message",
    ]

    events = check_replay(run.response)

    assert fold([e["type"] for e in events]) == fold(run.types)
    deltas = [e for e in events if e["type"] == "response.reasoning_text.delta"]
    assert [(d["output_index"], d["delta"]) for d in deltas] == [
        (0, "Need the weather."),
        (3, "It is sunny."),
    ]
    live = [
        {k: v for k, v in e.items() if k != "sequence_number"}
        for e in run.events
        if e["type"] in ("response.content_part.added", "response.reasoning_text.done")
    ]
    replayed = [
        {k: v for k, v in e.items() if k != "sequence_number"}
        for e in events
        if e["type"] in ("response.content_part.added", "response.reasoning_text.done")
    ]
    assert replayed == live


async def test_a_failed_response_replays_its_error_before_the_end(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    upstream.then(cut(*text_chunks("Hel")))
    run = await harness.run({"model": "m", "input": "hi"})

    events = check_replay(run.response)

    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert events[-2]["error"] == {
        "type": "server_error",
        "code": "upstream_error",
        "message": "stream ended without stop event",
        "param": None,
    }
    assert fold([e["type"] for e in events]) == fold(run.types)


async def test_a_failure_without_output_replays_as_it_streamed(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    upstream.then(status(400, "no such model"))
    run = await harness.run({"model": "m", "input": "hi"})

    events = check_replay(run.response)

    assert [e["type"] for e in events] == [e["type"] for e in run.events]


async def test_an_incomplete_response_ends_with_response_incomplete(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    upstream.then(text_reply("Once upon", finish_reason="length"))
    run = await harness.run({"model": "m", "input": "story", "max_output_tokens": 2})

    events = check_replay(run.response)

    assert events[-1]["type"] == "response.incomplete"
    assert events[-2]["item"]["status"] == "incomplete"


@pytest.mark.parametrize("text", ["", "x"])
def test_a_message_replays_its_text_as_one_delta_or_none(text: str) -> None:
    message = {
        "id": "msg_1",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }
    response = minimal_response([message])

    events = replay_events(response)

    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert [d["delta"] for d in deltas] == ([text] if text else [])
    part_added = next(e for e in events if e["type"] == "response.content_part.added")
    assert part_added["part"]["text"] == ""


async def test_logprobs_replay_as_the_live_stream_carried_them(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    tokens = [token_logprob("Sun", -0.3, ("Rain", -1.9)), token_logprob("ny", -0.1, ("!", -3))]
    upstream.then(completion(*scored_text_chunks(*tokens)))
    include = ["message.output_text.logprobs"]
    run = await harness.run({"model": "m", "input": "weather?", "include": include})

    events = check_replay(run.response)

    def logprobs_of(events: list[Event], kind: str) -> list[Any]:
        return [entry for e in events if e["type"] == kind for entry in e["logprobs"]]

    for kind in ("response.output_text.delta", "response.output_text.done"):
        assert logprobs_of(events, kind) == logprobs_of(run.events, kind)
    [added] = [e for e in events if e["type"] == "response.content_part.added"]
    assert added["part"]["logprobs"] == []
    [done] = [e for e in events if e["type"] == "response.content_part.done"]
    assert done["part"]["logprobs"] == tokens


def test_replay_does_not_change_the_response() -> None:
    response = minimal_response(
        [
            {
                "id": "fc_1",
                "type": "function_call",
                "status": "completed",
                "call_id": "call_1",
                "name": "f",
                "arguments": "{}",
            }
        ]
    )
    before = copy.deepcopy(response)

    events = replay_events(response)

    assert response == before
    assert events[0]["response"] is not response


def minimal_response(output: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "status": "completed",
        "output": output,
        "usage": None,
        "error": None,
        "incomplete_details": None,
        "completed_at": 1,
    }
