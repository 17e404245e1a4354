"""`cut_off_items`: the items a crash left open in an event log, closed `incomplete` with
what the log shows of them, before a resumed run adds new ones."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from app.engine.chat.client import Chunk
from app.engine.chat.turn import TurnTranslator
from app.engine.cut_items import closing_events, cut_off_items
from app.engine.events import Emitter
from app.engine.items import function_call_output
from app.shapes import Event
from tests.support.schema import assert_valid_events
from tests.unit.streams import RecordingSink, assert_numbered_from, assert_well_formed
from tests.unit.upstream import (
    ToolCall,
    call_chunks,
    reasoning_chunks,
    scored_text_chunks,
    text_chunks,
    token_logprob,
)

WEATHER = ToolCall("lookup_weather", {"city": "Oslo"}, "call_oslo")


async def log_of(
    chunks: Iterable[Chunk], mcp_tools: dict[str, str] | None = None, logprobs: bool = False
) -> tuple[list[Event], TurnTranslator]:
    """The events a turn sent for `chunks`, as if the process died right after them (the
    list keeps growing if the translator is used further)."""
    sink = RecordingSink()
    turn = TurnTranslator(
        Emitter(sink), first_output_index=0, mcp_tools=mcp_tools, logprobs=logprobs
    )
    for c in chunks:
        await turn.on_chunk(c)
    return sink.events, turn


async def test_an_open_message_is_closed_with_its_text_so_far() -> None:
    events, turn = await log_of(text_chunks("Hel", "lo wor"))

    [(index, item)] = cut_off_items(events)

    assert index == 0
    assert item["id"] == events[0]["item"]["id"]
    assert item["status"] == "incomplete"
    assert item["content"] == [
        {"type": "output_text", "text": "Hello wor", "annotations": [], "logprobs": []}
    ]
    # The log tells what the process knew: the same item it would have kept itself.
    assert [item] == turn.partial_items()


async def test_an_open_message_keeps_the_logprobs_its_deltas_carried() -> None:
    tokens = [token_logprob("Hel", -0.2, ("Hal", -2.0)), token_logprob("lo wör", -0.7)]
    events, turn = await log_of(scored_text_chunks(*tokens), logprobs=True)

    [(_, item)] = cut_off_items(events)

    # The events carry no bytes; they are the tokens' UTF-8, as the upstream sent them.
    assert item["content"][0]["logprobs"] == tokens
    assert [item] == turn.partial_items()


async def test_an_open_reasoning_item_is_closed_with_its_text_so_far() -> None:
    events, turn = await log_of(reasoning_chunks("Let me ", "think ab"))

    [(index, item)] = cut_off_items(events)

    assert index == 0
    assert item["id"] == events[0]["item"]["id"]
    assert item["type"] == "reasoning"
    assert item["status"] == "incomplete"
    assert item["content"] == [{"type": "reasoning_text", "text": "Let me think ab"}]
    assert [item] == turn.partial_items()


async def test_a_reasoning_item_done_before_the_crash_stays_as_it_is() -> None:
    events, _ = await log_of([*reasoning_chunks("Thought."), *text_chunks("Ans")])

    [(index, item)] = cut_off_items(events)

    assert (index, item["type"]) == (1, "message")


@pytest.mark.parametrize(
    ("chunks", "text_done"),
    [
        (reasoning_chunks("Let me ", "think ab"), "response.reasoning_text.done"),
        (text_chunks("Hel", "lo wor"), "response.output_text.done"),
    ],
    ids=["reasoning", "message"],
)
async def test_closing_events_close_an_open_part_then_its_item(
    chunks: list[Chunk], text_done: str
) -> None:
    events, turn = await log_of(chunks)
    [cut] = turn.partial_items()
    [part] = cut["content"]

    closing = closing_events(events)

    assert [e["type"] for e in closing] == [
        text_done,
        "response.content_part.done",
        "response.output_item.done",
    ]
    assert_numbered_from(closing, events[-1]["sequence_number"] + 1)
    at = {"item_id": cut["id"], "output_index": 0, "content_index": 0}
    assert {k: closing[0][k] for k in at} == at
    assert closing[0]["text"] == part["text"]
    assert closing[1]["part"] == part
    assert closing[2]["item"] == cut
    assert_well_formed([*events, *closing], ended=False)
    assert_valid_events([*events, *closing])


async def test_an_open_call_is_closed_with_its_arguments_so_far() -> None:
    chunks = [*text_chunks("Let me see."), *call_chunks(WEATHER, piece_chars=5)[:3]]
    events, turn = await log_of(chunks)

    [(index, item)] = cut_off_items(events)

    assert index == 1  # the message before it was done: it stays as it is
    assert item["type"] == "function_call"
    assert item["status"] == "incomplete"
    assert item["call_id"] == "call_oslo"
    assert item["arguments"] == WEATHER.arguments_json[:10]
    assert turn.partial_items()[1] == item


async def test_nothing_is_left_to_close_once_the_turn_closed_its_items() -> None:
    events, turn = await log_of([*text_chunks("Done."), *call_chunks(WEATHER)])
    assert [item["type"] for _, item in cut_off_items(events)] == ["function_call"]

    await turn.close_open_items("completed")

    assert cut_off_items(events) == []


async def test_an_mcp_call_is_left_open_for_its_redone_call() -> None:
    add = ToolCall("add", {"a": 1}, "call_add")
    events, _ = await log_of([*text_chunks("Adding."), *call_chunks(add)], {"add": "calc"})
    opened = [e["item"]["type"] for e in events if e["type"] == "response.output_item.added"]
    assert opened == ["message", "mcp_call"]

    assert cut_off_items(events) == []


def added(number: int, index: int, item: dict[str, object]) -> Event:
    return {
        "type": "response.output_item.added",
        "sequence_number": number,
        "output_index": index,
        "item": item,
    }


async def test_a_tool_output_in_flight_is_closed_incomplete() -> None:
    output = function_call_output({"type": "function_call", "call_id": "call_oslo"})

    assert cut_off_items([added(0, 3, output)]) == [(3, {**output, "status": "incomplete"})]


async def test_parallel_outputs_in_flight_are_closed_in_the_order_they_were_opened() -> None:
    call = {"type": "function_call", "call_id": "c"}
    first, second = function_call_output(call), function_call_output(call)

    closed = cut_off_items([added(0, 4, first), added(1, 5, second)])

    assert [(index, item["id"]) for index, item in closed] == [(4, first["id"]), (5, second["id"])]
    assert all(item["status"] == "incomplete" for _, item in closed)
