"""The loop's plain answers: text, the token limit, usage, the conversation it sends, and
the run that finds its response already ended."""

from __future__ import annotations

import asyncio

import pytest

from app.engine.events import DiscardSink, StreamSink
from app.engine.loop import RunMode
from app.statuses import ResponseStatus, StepKind, StepStatus
from app.store.rows import Outcome
from tests.support.event_types import message_events
from tests.support.schema import assert_valid_events, assert_valid_response
from tests.unit.harness import Harness
from tests.unit.streams import (
    RecordingSink,
    assert_numbered_from,
    assert_well_formed,
    text_deltas,
)
from tests.unit.upstream import (
    ScriptedUpstream,
    TokenUsage,
    ToolCall,
    call_chunks,
    completion,
    scored_text_chunks,
    text_reply,
    token_logprob,
)

# A response whose one message streams in two deltas, up to its terminal event.
TEXT_EVENTS = ["response.created", "response.in_progress", *message_events(deltas=2)]


async def test_plain_text_answer(harness: Harness, upstream: ScriptedUpstream) -> None:
    usage = TokenUsage(prompt_tokens=9, completion_tokens=2, cached_tokens=4)
    upstream.then(text_reply("Hel", "lo!", usage=usage))

    run = await harness.run({"model": "m", "input": "Say hello"})

    assert run.types == [*TEXT_EVENTS, "response.completed"]
    assert_numbered_from(run.events, 0)
    assert_well_formed(run.events)
    assert_valid_events(run.events)
    message_id = run.events[2]["item"]["id"]
    assert [e["delta"] for e in run.of_type("response.output_text.delta")] == ["Hel", "lo!"]
    assert all(e["item_id"] == message_id for e in run.events[3:8])
    assert run.events[8]["item"]["id"] == message_id
    assert run.events[6]["text"] == "Hello!"

    assert run.final.status == ResponseStatus.COMPLETED
    [message] = run.output
    assert message["id"] == message_id
    assert message["status"] == "completed"
    assert message["role"] == "assistant"
    assert message["content"][0]["text"] == "Hello!"
    assert run.final.usage == usage.responses()
    assert run.final.usage_missing is False
    # What the stream ended with is what GET shows.
    assert run.events[-1]["response"]["output"] == run.output
    assert run.events[-1]["response"]["status"] == "completed"
    assert_valid_response(run.response)
    [step] = run.steps
    assert (step.kind, step.status, step.ordinal) == (StepKind.MODEL_CALL, StepStatus.COMPLETED, 0)
    assert step.result is not None and step.result["items"] == run.output
    assert step.usage == usage.responses()


async def test_included_logprobs_are_asked_for_and_reach_every_view(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    tokens = [token_logprob("Hel", -0.2, ("Hi", -1.7)), token_logprob("lo!", -0.05, ("lo", -3))]
    upstream.then(completion(*scored_text_chunks(*tokens)))
    request = {"model": "m", "input": "hi", "top_logprobs": 1}

    run = await harness.run({**request, "include": ["message.output_text.logprobs"]})

    [sent] = upstream.requests
    assert (sent["logprobs"], sent["top_logprobs"]) == (True, 1)
    [message] = run.output
    assert message["content"][0]["logprobs"] == tokens
    assert run.events[-1]["response"]["output"] == run.output
    [step] = run.steps
    assert step.result is not None and step.result["items"] == run.output
    deltas = run.of_type("response.output_text.delta")
    assert [[e["token"] for e in d["logprobs"]] for d in deltas] == [["Hel"], ["lo!"]]
    assert run.response["top_logprobs"] == 1
    assert_valid_events(run.events)
    assert_valid_response(run.response)


async def test_the_upstream_gets_the_conversation_as_chat_messages(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    upstream.then(text_reply("ok"))

    await harness.run(
        {
            "model": "m",
            "instructions": "Be brief.",
            "input": [
                {"role": "user", "content": "One"},
                {"role": "assistant", "content": "Two"},
                {"role": "user", "content": "Three"},
            ],
            "temperature": 0.2,
        }
    )

    [body] = upstream.requests
    assert body["model"] == "m"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0.2
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "One"},
        {"role": "assistant", "content": "Two"},
        {"role": "user", "content": "Three"},
    ]
    # The registered tools are offered on every request.
    offered = [tool["function"]["name"] for tool in body["tools"]]
    assert "lookup_weather" in offered


async def test_tool_choice_none_offers_no_registered_tool(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    upstream.then(text_reply("ok"))

    await harness.run({"model": "m", "input": "hi", "tool_choice": "none"})

    [body] = upstream.requests
    assert "tools" not in body
    assert "tool_choice" not in body


async def test_previous_response_id_continues_the_conversation(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    upstream.then(text_reply("First answer"), text_reply("Second"))
    first = await harness.run({"model": "m", "instructions": "Old rules.", "input": "Q1"})

    second = await harness.run(
        {"model": "m", "input": "Q2", "previous_response_id": first.final.id}
    )

    assert second.final.status == ResponseStatus.COMPLETED
    # The previous input and output come first; its instructions are not inherited.
    assert upstream.requests[1]["messages"] == [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "First answer"},
        {"role": "user", "content": "Q2"},
    ]
    assert second.response["previous_response_id"] == first.final.id


async def test_a_deleted_previous_response_is_skipped(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    upstream.then(text_reply("ok"))

    run = await harness.run({"model": "m", "input": "Q", "previous_response_id": "resp_gone"})

    assert run.final.status == ResponseStatus.COMPLETED
    assert upstream.requests[0]["messages"] == [{"role": "user", "content": "Q"}]


@pytest.mark.parametrize(
    ("finish_reason", "reason"),
    [("length", "max_output_tokens"), ("content_filter", "content_filter")],
)
async def test_a_turn_cut_short_by_a_limit_ends_incomplete(
    harness: Harness, upstream: ScriptedUpstream, finish_reason: str, reason: str
) -> None:
    upstream.then(text_reply("Once upon", finish_reason=finish_reason))

    run = await harness.run({"model": "m", "input": "A story", "max_output_tokens": 16})

    assert upstream.requests[0]["max_tokens"] == 16
    assert run.final.status == ResponseStatus.INCOMPLETE
    assert run.final.incomplete_details == {"reason": reason}
    [message] = run.output
    assert message["status"] == "incomplete"
    assert message["content"][0]["text"] == "Once upon"
    assert run.types[-2:] == ["response.output_item.done", "response.incomplete"]
    assert run.events[-2]["item"]["status"] == "incomplete"
    assert run.events[-1]["response"]["incomplete_details"] == {"reason": reason}
    assert_well_formed(run.events)
    assert_valid_events(run.events)
    assert_valid_response(run.response)
    [step] = run.steps
    assert step.status == StepStatus.INCOMPLETE


async def test_calls_cut_short_by_the_token_limit_are_not_run(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    call = ToolCall("lookup_weather", {"city": "Oslo"}, "call_1")
    upstream.then(completion(*call_chunks(call), finish_reason="length"))

    run = await harness.run({"model": "m", "input": "Weather?", "max_output_tokens": 5})

    assert run.final.status == ResponseStatus.INCOMPLETE
    assert run.final.incomplete_details == {"reason": "max_output_tokens"}
    [item] = run.output
    assert item["type"] == "function_call"
    assert item["status"] == "incomplete"
    assert harness.tools.calls == []
    assert len(upstream.requests) == 1


async def test_missing_usage_completes_with_null_usage_and_is_flagged(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    upstream.then(text_reply("no count", usage=None))

    run = await harness.run({"model": "m", "input": "count me"})

    assert run.final.status == ResponseStatus.COMPLETED
    assert run.final.usage is None
    assert run.final.usage_missing is True
    assert run.events[-1]["response"]["usage"] is None


async def test_worker_run_numbers_events_after_the_logged_ones(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    """A background stream's log already holds `response.created` and `response.queued`."""
    upstream.then(text_reply("Hel", "lo!"))
    stored = harness.seed(
        {"model": "m", "input": "hi", "background": True, "stream": True}, RunMode.WORKER
    )

    run = await harness.run(stored, RunMode.WORKER, next_sequence_number=2)

    assert run.types == [*TEXT_EVENTS[1:], "response.completed"]
    assert_numbered_from(run.events, 2)
    assert run.events[0]["response"]["status"] == "in_progress"
    assert run.final.status == ResponseStatus.COMPLETED
    assert run.final.started_at is not None


async def test_a_response_that_already_ended_is_not_run(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    stored = harness.seed({"model": "m", "input": "hi", "background": True}, RunMode.WORKER)
    cancelled = await harness.store.finish(stored.id, Outcome(ResponseStatus.CANCELLED, []))
    assert cancelled is not None

    run = await harness.run(stored, RunMode.WORKER)

    assert run.final.status == ResponseStatus.CANCELLED
    assert run.events == []
    assert upstream.requests == []
    assert run.steps == []


async def test_emitter_flushes_at_item_boundaries_only(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    """Batching sinks rely on it: a flush after each boundary event, none after a delta."""
    upstream.then(text_reply("a", "b", "c"))
    sink = RecordingSink()

    await harness.run({"model": "m", "input": "hi"}, sink=sink)

    flushed_after = [sink.events[count - 1]["type"] for count in sink.flushes]
    assert flushed_after == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.output_item.done",
        "response.completed",
    ]
    assert text_deltas(sink.events) == "abc"


async def test_the_inline_drivers_sinks(harness: Harness, upstream: ScriptedUpstream) -> None:
    """Blocking requests discard the events; an inline stream reads them from a queue. The
    run, and what it stores, is the same either way; the stream takes what has arrived at once."""
    upstream.then(text_reply("Hi"), text_reply("Hi"))
    queued = StreamSink()

    streamed = await harness.run({"model": "m", "input": "hi", "stream": True}, sink=queued)
    blocking = await harness.run({"model": "m", "input": "hi"}, sink=DiscardSink())
    queued.close()

    events = await queued.take(timeout_s=1)
    assert [e["type"] for e in events] == [*TEXT_EVENTS[:4], *TEXT_EVENTS[5:], "response.completed"]
    assert events[-1]["response"]["output"] == streamed.output
    assert streamed.final.status == blocking.final.status == ResponseStatus.COMPLETED
    assert [i["content"] for i in streamed.output] == [i["content"] for i in blocking.output]
    assert await queued.take(timeout_s=1) == []
    assert queued.closed


async def test_a_stream_sink_waits_for_events_and_wakes_early() -> None:
    sink = StreamSink()
    assert await sink.take(timeout_s=0.01) == []  # nothing came: a keep-alive is due

    async def wake_soon() -> None:
        sink.wake()

    waker = asyncio.create_task(wake_soon())
    assert await sink.take(timeout_s=60) == []  # woken long before the timeout
    await waker
    await sink.send({"type": "a", "sequence_number": 0})
    await sink.send({"type": "b", "sequence_number": 1})
    assert [e["type"] for e in await sink.take(timeout_s=60)] == ["a", "b"]


async def test_a_response_not_stored_is_answered_then_forgotten(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    upstream.then(text_reply("Hel", "lo!"))

    run = await harness.run({"model": "m", "input": "Say hello", "store": False})

    # The run's own answer (the terminal event, the row it returns) still has it all ...
    assert run.final.status == ResponseStatus.COMPLETED
    assert run.events[-1]["response"]["output"] == run.output
    assert run.output[0]["content"][0]["text"] == "Hello!"
    assert run.final.request["input"][0]["content"][0]["text"] == "Say hello"
    # ... while the store has already forgotten it, steps included.
    kept = harness.store.response(run.final.id)
    assert (kept.status, kept.request, kept.output) == (
        ResponseStatus.COMPLETED,
        {"store": False},
        None,
    )
    assert kept.usage == run.final.usage
    assert kept.is_forgotten
    assert run.steps == []
