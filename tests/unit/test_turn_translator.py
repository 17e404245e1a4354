"""The TurnTranslator and run_turn on their own: chat chunks in, Responses events and items
out, and the one outcome of a turn."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable
from typing import Any

import pytest
from openai.types.responses import ResponseOutputText

from app.engine.chat.client import Chunk, UpstreamError
from app.engine.chat.turn import StreamedTurn, TurnTranslator, run_turn
from app.engine.events import Emitter
from app.statuses import StepStatus
from tests.support.event_types import message_events, reasoning_events
from tests.support.schema import assert_valid_events
from tests.unit.streams import RecordingSink, assert_numbered_from, assert_well_formed
from tests.unit.upstream import (
    TokenUsage,
    ToolCall,
    call_chunks,
    chunk,
    finish_chunk,
    reasoning_chunks,
    scored_text_chunks,
    text_chunks,
    token_logprob,
    usage_chunk,
    with_logprobs,
)

WEATHER = ToolCall("lookup_weather", {"city": "Oslo"}, "call_oslo")
TIME = ToolCall("current_time", {}, "call_time")


class Turn:
    """A translator writing to a recording sink, with the progress it reports."""

    def __init__(
        self,
        first_output_index: int = 0,
        mcp_tools: dict[str, str] | None = None,
        logprobs: bool = False,
        think_tags: bool = False,
    ):
        self.sink = RecordingSink()
        self.progress: list[list[dict[str, Any]]] = []
        self.translator = TurnTranslator(
            Emitter(self.sink),
            first_output_index=first_output_index,
            on_item_done=self._on_item_done,
            mcp_tools=mcp_tools,
            logprobs=logprobs,
            think_tags=think_tags,
        )

    async def _on_item_done(self, items: list[dict[str, Any]]) -> None:
        self.progress.append(items)

    async def feed(self, chunks: Iterable[Chunk]) -> None:
        for c in chunks:
            await self.translator.on_chunk(c)

    async def run(self, chunks: Iterable[Chunk]) -> StreamedTurn:
        return await run_turn(stream(chunks), self.translator)

    @property
    def types(self) -> list[str]:
        return self.sink.types


async def stream(chunks: Iterable[Chunk]) -> AsyncGenerator[Chunk]:
    for c in chunks:
        yield c


async def failing_stream(chunks: Iterable[Chunk], error: UpstreamError) -> AsyncGenerator[Chunk]:
    for c in chunks:
        yield c
    raise error


async def test_text_deltas_make_one_message() -> None:
    turn = Turn()
    usage = TokenUsage(5, 2)

    result = await turn.run([*text_chunks("Hel", "lo"), finish_chunk(), usage_chunk(usage)])

    assert turn.types == message_events(deltas=2)
    assert_numbered_from(turn.sink.events, 0)
    assert_valid_events(turn.sink.events)
    assert result.outcome == StepStatus.COMPLETED
    [message] = result.items
    assert message["type"] == "message"
    assert message["status"] == "completed"
    assert message["content"] == [
        {"type": "output_text", "text": "Hello", "annotations": [], "logprobs": []}
    ]
    assert turn.sink.events[-1]["item"] == message
    assert result.calls == []
    assert result.usage == usage.responses()
    assert result.usage_missing is False
    assert result.error is None
    assert turn.progress == [[message]]


async def test_a_role_chunk_with_empty_content_opens_nothing() -> None:
    turn = Turn()

    result = await turn.run([chunk({"role": "assistant", "content": ""}), finish_chunk()])

    assert turn.types == []
    assert result.outcome == StepStatus.COMPLETED
    assert result.items == []
    assert result.usage is None
    assert result.usage_missing is False  # nothing was generated, so nothing went uncounted


async def test_tool_call_deltas_split_across_chunks() -> None:
    turn = Turn()

    result = await turn.run([*call_chunks(WEATHER, piece_chars=4), finish_chunk("tool_calls")])

    arguments = WEATHER.arguments_json
    pieces = [arguments[i : i + 4] for i in range(0, len(arguments), 4)]
    assert turn.types == [
        "response.output_item.added",
        *["response.function_call_arguments.delta"] * len(pieces),
        "response.function_call_arguments.done",
        "response.output_item.done",
    ]
    added = turn.sink.events[0]["item"]
    assert (added["status"], added["arguments"], added["name"]) == (
        "in_progress",
        "",
        "lookup_weather",
    )
    deltas = turn.sink.of_type("response.function_call_arguments.delta")
    assert [e["delta"] for e in deltas] == pieces
    done = turn.sink.of_type("response.function_call_arguments.done")[0]
    assert (done["name"], done["arguments"]) == ("lookup_weather", arguments)
    [call] = result.calls
    assert call == {**added, "status": "completed", "arguments": arguments}
    assert call["call_id"] == "call_oslo"
    assert call["id"].startswith("fc_")
    assert result.items == [call]
    assert_valid_events(turn.sink.events)


async def test_a_name_that_arrives_after_the_head_is_kept() -> None:
    turn = Turn()
    chunks = [
        chunk({"tool_calls": [{"index": 0, "id": "call_x", "function": {"arguments": "{"}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"name": "current_time"}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]}),
        finish_chunk("tool_calls"),
    ]

    result = await turn.run(chunks)

    [call] = result.calls
    assert (call["name"], call["arguments"], call["call_id"]) == ("current_time", "{}", "call_x")
    done = turn.sink.of_type("response.function_call_arguments.done")[0]
    assert done["name"] == "current_time"


async def test_a_call_without_an_id_gets_one() -> None:
    turn = Turn()
    head = {"index": 0, "function": {"name": "current_time", "arguments": "{}"}}

    result = await turn.run([chunk({"tool_calls": [head]}), finish_chunk("tool_calls")])

    [call] = result.calls
    assert call["call_id"].startswith("call_")


async def test_text_then_calls_each_item_closed_before_the_next() -> None:
    turn = Turn()

    result = await turn.run(
        [*text_chunks("Checking."), *call_chunks(WEATHER, TIME), finish_chunk("tool_calls")]
    )

    assert [(i["type"], i["status"]) for i in result.items] == [
        ("message", "completed"),
        ("function_call", "completed"),
        ("function_call", "completed"),
    ]
    assert [c["call_id"] for c in result.calls] == ["call_oslo", "call_time"]
    added = turn.sink.of_type("response.output_item.added")
    assert [e["output_index"] for e in added] == [0, 1, 2]
    assert_well_formed(turn.sink.events, ended=False)
    # Progress is reported as each item is done, with everything finished so far.
    assert [[i["type"] for i in items] for items in turn.progress] == [
        ["message"],
        ["message", "function_call"],
        ["message", "function_call", "function_call"],
    ]


async def test_output_indexes_continue_from_the_earlier_turns() -> None:
    turn = Turn(first_output_index=5)

    await turn.run([*text_chunks("a"), *call_chunks(TIME), finish_chunk("tool_calls")])

    indexes = {e["output_index"] for e in turn.sink.events}
    assert indexes == {5, 6}


async def test_choices_other_than_the_first_are_ignored() -> None:
    turn = Turn()
    other = chunk({"content": "ignored"})
    other["choices"][0]["index"] = 1

    result = await turn.run([*text_chunks("kept"), other, finish_chunk()])

    [message] = result.items
    assert message["content"][0]["text"] == "kept"


async def test_an_interleaved_call_index_raises() -> None:
    turn = Turn()
    back_to_first = chunk({"tool_calls": [{"index": 0, "function": {"arguments": "x"}}]})
    await turn.feed([*call_chunks(WEATHER), *call_chunks(TIME, first_index=1)])

    with pytest.raises(UpstreamError, match="upstream sent more of tool call 0 after a later one"):
        await turn.translator.on_chunk(back_to_first)


async def test_an_interleaved_call_index_fails_the_turn() -> None:
    turn = Turn()
    back_to_first = chunk({"tool_calls": [{"index": 0, "function": {"arguments": "x"}}]})

    result = await turn.run(
        [*call_chunks(WEATHER), *call_chunks(TIME, first_index=1), back_to_first, finish_chunk()]
    )

    assert result.outcome == StepStatus.FAILED
    assert result.error == {
        "code": "upstream_error",
        "message": "upstream sent more of tool call 0 after a later one",
    }
    assert result.cut_after_first_chunk is True
    assert [(c["call_id"], c["status"]) for c in result.items] == [
        ("call_oslo", "completed"),
        ("call_time", "incomplete"),
    ]
    assert_well_formed(turn.sink.events, ended=False)


@pytest.mark.parametrize(
    ("reason", "incomplete_reason"),
    [("length", "max_output_tokens"), ("content_filter", "content_filter")],
)
async def test_a_limit_ends_the_turn_incomplete(reason: str, incomplete_reason: str) -> None:
    turn = Turn()

    result = await turn.run(
        [*text_chunks("Once"), finish_chunk(reason), usage_chunk(TokenUsage(3, 1))]
    )

    assert result.outcome == StepStatus.INCOMPLETE
    assert result.incomplete_reason == incomplete_reason
    [message] = result.items
    assert message["status"] == "incomplete"
    assert turn.progress == []  # only completed items are reported as progress


async def test_content_without_usage_is_flagged() -> None:
    turn = Turn()

    result = await turn.run([*text_chunks("uncounted"), finish_chunk()])

    assert result.outcome == StepStatus.COMPLETED
    assert result.usage is None
    assert result.usage_missing is True


@pytest.mark.parametrize(
    ("chunks", "message", "cut"),
    [
        ([], "empty upstream stream", False),
        (text_chunks("Hel"), "stream ended without stop event", True),
    ],
    ids=["no-chunks", "no-finish"],
)
async def test_a_stream_without_a_finish_fails(
    chunks: list[Chunk], message: str, cut: bool
) -> None:
    turn = Turn()

    result = await turn.run(chunks)

    assert result.outcome == StepStatus.FAILED
    assert result.error == {"code": "upstream_error", "message": message}
    assert result.cut_after_first_chunk is cut
    assert all(item["status"] == "incomplete" for item in result.items)
    if cut:
        assert_well_formed(turn.sink.events, ended=False)
    else:
        assert turn.sink.events == []


async def test_an_upstream_error_closes_the_open_items_incomplete() -> None:
    turn = Turn()
    error = UpstreamError("upstream error mid-stream: boom")

    result = await run_turn(
        failing_stream([*text_chunks("Hi"), *call_chunks(TIME)], error), turn.translator
    )

    assert result.outcome == StepStatus.FAILED
    assert result.error == {"code": "upstream_error", "message": "upstream error mid-stream: boom"}
    assert [(i["type"], i["status"]) for i in result.items] == [
        ("message", "completed"),
        ("function_call", "incomplete"),
    ]
    assert turn.sink.events[-1]["item"]["status"] == "incomplete"


async def test_partial_items_of_an_interrupted_turn() -> None:
    turn = Turn()
    await turn.feed(text_chunks("Half a sen"))

    [message] = turn.translator.partial_items()
    assert message["status"] == "incomplete"
    assert message["content"][0]["text"] == "Half a sen"

    arguments = WEATHER.arguments_json
    await turn.feed(call_chunks(WEATHER, piece_chars=len(arguments) - 3)[:2])
    sent = len(turn.sink.events)
    done, cut = turn.translator.partial_items()

    assert (done["type"], done["status"]) == ("message", "completed")
    assert done["content"][0]["text"] == "Half a sen"
    assert (cut["type"], cut["status"]) == ("function_call", "incomplete")
    assert cut["arguments"] == arguments[:-3]
    # Asking sends nothing and changes nothing.
    assert len(turn.sink.events) == sent
    assert turn.translator.partial_items() == [done, cut]


async def test_calls_to_mcp_tools_become_mcp_call_items_left_open() -> None:
    turn = Turn(mcp_tools={"add": "calc"})
    add = ToolCall("add", {"a": 1, "b": 2}, "call_add")

    result = await turn.run([*call_chunks(add), finish_chunk("tool_calls")])

    [call] = result.calls
    assert call["type"] == "mcp_call"
    assert call["server_label"] == "calc"
    assert call["status"] == "in_progress"  # the loop runs it and completes it in place
    assert call["arguments"] == add.arguments_json
    assert call["id"].startswith("mcp_")
    assert turn.types[0] == "response.output_item.added"
    assert "response.mcp_call_arguments.delta" in turn.types
    assert turn.types[-1] == "response.mcp_call_arguments.done"
    assert "response.output_item.done" not in turn.types
    assert turn.progress == []


# --- logprobs ----------------------------------------------------------------------------

HEL = token_logprob("Hel", -0.25, ("Hal", -1.5))
LO = token_logprob("lo", -0.01, ("lo!", -4.0))
BANG = token_logprob("!", -0.5)


def as_event_logprob(entry: dict[str, Any]) -> dict[str, Any]:
    """A part's logprobs entry as the text events carry it (the SDK's
    ResponseTextDeltaEvent.Logprob): no bytes, its own or its alternatives'."""
    top = [{"token": t["token"], "logprob": t["logprob"]} for t in entry["top_logprobs"]]
    return {"token": entry["token"], "logprob": entry["logprob"], "top_logprobs": top}


def assert_sdk_output_text(part: dict[str, Any]) -> None:
    """Every field of an output_text part is the SDK's, and nothing else is there."""
    assert ResponseOutputText.model_validate(part).to_dict() == part


async def test_logprobs_go_with_their_delta_and_all_of_them_with_the_part() -> None:
    turn = Turn(logprobs=True)

    result = await turn.run([*scored_text_chunks(HEL, LO), finish_chunk()])

    deltas = turn.sink.of_type("response.output_text.delta")
    assert [d["logprobs"] for d in deltas] == [[as_event_logprob(HEL)], [as_event_logprob(LO)]]
    [done] = turn.sink.of_type("response.output_text.done")
    assert done["logprobs"] == [as_event_logprob(HEL), as_event_logprob(LO)]
    [message] = result.items
    part = message["content"][0]
    assert part["logprobs"] == [HEL, LO]
    assert_sdk_output_text(part)
    [added] = turn.sink.of_type("response.content_part.added")
    assert added["part"]["logprobs"] == []
    [part_done] = turn.sink.of_type("response.content_part.done")
    assert part_done["part"] == part
    assert turn.sink.events[-1]["item"] == message
    assert turn.progress == [[message]]
    assert_valid_events(turn.sink.events)


async def test_logprobs_are_left_out_unless_the_request_asked_for_them() -> None:
    turn = Turn()

    result = await turn.run([*scored_text_chunks(HEL, LO), finish_chunk()])

    text_events = [e for e in turn.sink.events if e["type"].startswith("response.output_text.")]
    assert [e["logprobs"] for e in text_events] == [[], [], []]
    assert result.items[0]["content"][0]["logprobs"] == []


async def test_logprobs_of_a_chunk_without_text_go_with_the_next_delta() -> None:
    turn = Turn(logprobs=True)
    chunks = [
        *scored_text_chunks(HEL),
        with_logprobs(chunk({"content": ""}), LO),  # a token that is part of a character
        with_logprobs(chunk({"content": "lo!"}), BANG),
        finish_chunk(),
    ]

    result = await turn.run(chunks)

    deltas = turn.sink.of_type("response.output_text.delta")
    assert [d["delta"] for d in deltas] == ["Hel", "lo!"]
    assert [d["logprobs"] for d in deltas] == [
        [as_event_logprob(HEL)],
        [as_event_logprob(LO), as_event_logprob(BANG)],
    ]
    assert result.items[0]["content"][0]["logprobs"] == [HEL, LO, BANG]


async def test_upstream_logprobs_are_made_readable_for_the_sdk() -> None:
    turn = Turn(logprobs=True)
    no_bytes = {"token": "é", "logprob": -0.5, "top_logprobs": None}
    unlikely = {**token_logprob("x", -1.0), "logprob": float("-inf")}
    unreadable = [{"token": 7, "logprob": -1.0}, {"token": "y", "logprob": "low"}, "z"]
    chunks = [
        chunk({"role": "assistant", "content": ""}),
        with_logprobs(chunk({"content": "éx"}), no_bytes, unlikely, *unreadable),
        finish_chunk(),
    ]

    result = await turn.run(chunks)

    part = result.items[0]["content"][0]
    assert part["logprobs"] == [
        {"token": "é", "logprob": -0.5, "bytes": list("é".encode()), "top_logprobs": []},
        {**unlikely, "logprob": -9999.0},
    ]
    assert_sdk_output_text(part)
    assert_valid_events(turn.sink.events)


async def test_partial_items_keep_the_logprobs_streamed_so_far() -> None:
    turn = Turn(logprobs=True)
    await turn.feed(scored_text_chunks(HEL, LO))

    [message] = turn.translator.partial_items()

    assert message["status"] == "incomplete"
    assert message["content"][0]["logprobs"] == [HEL, LO]


# --- reasoning ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["reasoning_content", "reasoning"])
async def test_reasoning_deltas_make_a_reasoning_item_before_the_message(key: str) -> None:
    turn = Turn()
    usage = TokenUsage(5, 6, reasoning_tokens=4)

    result = await turn.run(
        [
            *reasoning_chunks("The user ", "greets me.", key=key),
            chunk({"content": "Hi"}),
            finish_chunk(),
            usage_chunk(usage),
        ]
    )

    assert turn.types == [*reasoning_events(deltas=2), *message_events(deltas=1)]
    assert_numbered_from(turn.sink.events, 0)
    assert_valid_events(turn.sink.events)
    added, part_added, *deltas, text_done, part_done, done = turn.sink.events[:7]
    item_id = added["item"]["id"]
    assert item_id.startswith("rs_")
    assert added["item"] == {
        "id": item_id,
        "type": "reasoning",
        "summary": [],
        "content": [],
        "status": "in_progress",
    }
    at = {"item_id": item_id, "output_index": 0, "content_index": 0}
    assert part_added == {
        "type": "response.content_part.added",
        "sequence_number": 1,
        **at,
        "part": {"type": "reasoning_text", "text": ""},
    }
    assert [(d["delta"], d["item_id"], d["content_index"]) for d in deltas] == [
        ("The user ", item_id, 0),
        ("greets me.", item_id, 0),
    ]
    assert (text_done["text"], text_done["item_id"]) == ("The user greets me.", item_id)
    part = {"type": "reasoning_text", "text": "The user greets me."}
    assert part_done["part"] == part
    reasoning, message = result.items
    assert reasoning == {**added["item"], "status": "completed", "content": [part]}
    assert done["item"] == reasoning
    assert message["type"] == "message"
    assert turn.sink.events[7]["output_index"] == 1  # the message comes after it
    assert result.usage is not None
    assert result.usage["output_tokens_details"] == {"reasoning_tokens": 4}
    assert turn.progress == [[reasoning], [reasoning, message]]


async def test_reasoning_comes_before_the_calls_of_its_turn() -> None:
    turn = Turn()

    result = await turn.run(
        [*reasoning_chunks("Need the weather."), *call_chunks(WEATHER), finish_chunk("tool_calls")]
    )

    assert [(i["type"], i["status"]) for i in result.items] == [
        ("reasoning", "completed"),
        ("function_call", "completed"),
    ]
    assert result.calls == result.items[1:]
    assert turn.types[: len(reasoning_events(1))] == reasoning_events(1)
    assert_well_formed(turn.sink.events, ended=False)
    assert_valid_events(turn.sink.events)


async def test_reasoning_after_text_opens_an_item_of_its_own() -> None:
    turn = Turn()

    result = await turn.run(
        [
            *text_chunks("First."),
            chunk({"reasoning": "On second thought"}),
            chunk({"content": "Second."}),
            finish_chunk(),
        ]
    )

    assert [(i["type"], i["status"]) for i in result.items] == [
        ("message", "completed"),
        ("reasoning", "completed"),
        ("message", "completed"),
    ]
    assert [e["output_index"] for e in turn.sink.of_type("response.output_item.added")] == [0, 1, 2]
    assert result.items[1]["content"] == [{"type": "reasoning_text", "text": "On second thought"}]
    assert_well_formed(turn.sink.events, ended=False)


@pytest.mark.parametrize(
    "delta",
    [
        {"reasoning_content": None, "content": "Hi"},
        {"reasoning": "", "content": "Hi"},
        {"reasoning": None, "reasoning_content": None, "content": "Hi"},
    ],
)
async def test_null_or_empty_reasoning_opens_nothing(delta: dict[str, Any]) -> None:
    turn = Turn()

    result = await turn.run([chunk(delta), finish_chunk()])

    assert [i["type"] for i in result.items] == ["message"]


async def test_an_upstream_error_mid_reasoning_closes_it_incomplete() -> None:
    turn = Turn()
    error = UpstreamError("upstream error mid-stream: boom")

    result = await run_turn(
        failing_stream(reasoning_chunks("Half a ", "thou"), error), turn.translator
    )

    assert result.outcome == StepStatus.FAILED
    [reasoning] = result.items
    assert reasoning["status"] == "incomplete"
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "Half a thou"}]
    assert turn.types == reasoning_events(deltas=2)
    assert turn.sink.events[-1]["item"] == reasoning
    assert turn.progress == []


async def test_partial_items_hold_the_reasoning_so_far() -> None:
    turn = Turn()
    await turn.feed(reasoning_chunks("Thinking ", "ha"))

    [reasoning] = turn.translator.partial_items()

    assert reasoning["type"] == "reasoning"
    assert reasoning["status"] == "incomplete"
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "Thinking ha"}]
    await turn.feed(text_chunks("Answer"))
    done, message = turn.translator.partial_items()
    assert (done["status"], message["status"]) == ("completed", "incomplete")
    assert done["content"] == reasoning["content"]


THINKING = ["<th", "ink>\n", "Greeting", " noted.", "</th", "ink>\n\n", "Hel", "lo!"]


async def test_think_tags_split_reasoning_off_the_content_when_asked() -> None:
    turn = Turn(think_tags=True)

    result = await turn.run([*text_chunks(*THINKING), finish_chunk()])

    reasoning, message = result.items
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "Greeting noted."}]
    assert message["content"][0]["text"] == "Hello!"
    assert [d["delta"] for d in turn.sink.of_type("response.reasoning_text.delta")] == [
        "Greeting",
        " noted.",
    ]
    assert turn.types[: len(reasoning_events(2))] == reasoning_events(2)
    assert_valid_events(turn.sink.events)


async def test_think_tags_are_text_unless_asked() -> None:
    turn = Turn()

    result = await turn.run([*text_chunks(*THINKING), finish_chunk()])

    [message] = result.items
    assert message["content"][0]["text"] == "".join(THINKING)


async def test_a_think_tag_never_closed_makes_it_all_reasoning() -> None:
    turn = Turn(think_tags=True)

    result = await turn.run([*text_chunks("<think>", "All of it", " </thi"), finish_chunk()])

    assert result.outcome == StepStatus.COMPLETED
    [reasoning] = result.items
    assert reasoning["status"] == "completed"
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "All of it </thi"}]
    assert_well_formed(turn.sink.events, ended=False)


async def test_text_that_only_starts_like_a_tag_comes_out_unchanged() -> None:
    turn = Turn(think_tags=True)

    result = await turn.run([*text_chunks(" <th", "is is it"), finish_chunk()])

    [message] = result.items
    assert message["content"][0]["text"] == " <this is it"
