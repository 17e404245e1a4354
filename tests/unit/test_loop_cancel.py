"""Runs stopped from outside: a cancelled task (the inline client left; a worker shutting
down or a lost lease hands the response back), a response ended by someone else while it
runs, and the RESPONSE_TIMEOUT_S deadline."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from app.engine.loop import HAND_BACK, RunMode
from app.engine.run_state import ABANDONED_CODE
from app.statuses import ResponseStatus, StepKind, StepStatus
from app.store.rows import Outcome, StoredResponse
from tests.support.memory_store import MemoryStore
from tests.support.schema import assert_valid_events
from tests.unit.harness import Harness
from tests.unit.streams import WAIT_S, RecordingSink, assert_well_formed, text_deltas
from tests.unit.tool_host import ToolCallSeen, ToolHost
from tests.unit.upstream import (
    Hold,
    Reply,
    ScriptedUpstream,
    ToolCall,
    calls_reply,
    chunk,
    completion,
    text_chunks,
)

TIME = ToolCall("current_time", {}, "call_time")


def held_text(*pieces: str) -> tuple[Reply, Hold]:
    """A turn that streams `pieces` and then waits for the test."""
    hold = Hold()
    return Reply([*text_chunks(*pieces), hold]), hold


async def reached(event: asyncio.Event) -> None:
    async with asyncio.timeout(WAIT_S):
        await event.wait()


async def run_cancelled_at(
    harness: Harness,
    stored: StoredResponse,
    point: asyncio.Event,
    mode: RunMode = RunMode.INLINE,
    message: str | None = None,
) -> tuple[StoredResponse, RecordingSink]:
    """Run `stored`; once it reaches `point`, cancel its task (with `message`) and see it end
    cancelled. The row as the cancellation left it, and what the run sent."""
    async with harness.started(stored, mode) as (task, sink):
        await reached(point)
        task.cancel(message)
        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(WAIT_S):
                await task
    return harness.store.response(stored.id), sink


def block_tool(tools: ToolHost, name: str) -> None:
    async def never_answers(call: ToolCallSeen) -> httpx.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    tools.answer(name, never_answers)


async def test_inline_cancel_ends_the_response_cancelled_with_the_partial_text(
    harness: Harness, upstream: ScriptedUpstream, store: MemoryStore
) -> None:
    reply, hold = held_text("Hel", "lo")
    upstream.then(reply)
    stored = harness.seed({"model": "m", "input": "hi", "stream": True})

    row, sink = await run_cancelled_at(harness, stored, hold.reached)

    assert row.status == ResponseStatus.CANCELLED
    assert row.lease_owner is None
    [message] = row.output or []
    assert message["status"] == "incomplete"
    assert message["content"][0]["text"] == "Hello"
    [step] = store.step_list(stored.id)
    assert step.status == StepStatus.CANCELLED
    assert step.error is not None and step.error["code"] == ABANDONED_CODE
    # The upstream call was hung up on, not left streaming.
    [body] = upstream.bodies
    assert body.closed and not body.finished
    # Nobody listens any more: the loop sends nothing after the cancellation.
    assert sink.types[-1] == "response.output_text.delta"
    assert text_deltas(sink.events) == "Hello"


async def test_inline_cancel_during_a_tool_call(
    harness: Harness, upstream: ScriptedUpstream, tools: ToolHost, store: MemoryStore
) -> None:
    block_tool(tools, "current_time")
    upstream.then(calls_reply(TIME))
    stored = harness.seed({"model": "m", "input": "Time?"})

    row, _ = await run_cancelled_at(harness, stored, tools.arrived)

    assert row.status == ResponseStatus.CANCELLED
    assert [item["type"] for item in row.output or []] == ["function_call"]
    model, tool = store.step_list(stored.id)
    assert (model.kind, model.status) == (StepKind.MODEL_CALL, StepStatus.COMPLETED)
    assert (tool.kind, tool.status) == (StepKind.TOOL_CALL, StepStatus.CANCELLED)
    assert tool.error is not None and tool.error["code"] == ABANDONED_CODE


@pytest.mark.parametrize(
    ("mode", "message"),
    [(RunMode.INLINE, HAND_BACK), (RunMode.WORKER, None), (RunMode.WORKER, HAND_BACK)],
    ids=["inline-hand-back", "worker-shutdown", "worker-hand-back"],
)
async def test_a_handed_back_run_leaves_its_response_running(
    harness: Harness,
    upstream: ScriptedUpstream,
    store: MemoryStore,
    mode: RunMode,
    message: str | None,
) -> None:
    reply, hold = held_text("Hel")
    upstream.then(reply)
    stored = harness.seed({"model": "m", "input": "hi"}, mode)

    row, _ = await run_cancelled_at(harness, stored, hold.reached, mode, message)

    assert row.status == ResponseStatus.IN_PROGRESS
    assert row.output is None
    assert "finish" not in [write.name for write in store.writes]
    # The cut step is marked abandoned, for the next attempt to redo.
    [step] = store.step_list(stored.id)
    assert step.status == StepStatus.CANCELLED
    assert step.error is not None and step.error["code"] == ABANDONED_CODE
    assert upstream.bodies[0].closed


async def test_a_response_ended_elsewhere_keeps_that_ending(
    harness: Harness, upstream: ScriptedUpstream, store: MemoryStore
) -> None:
    """A cancel through the API ends the row while the loop still runs: the loop's own
    ending is refused, and it returns the row as the cancel left it, announcing nothing."""
    hold = Hold()
    upstream.then(completion(*text_chunks("Hel"), hold, chunk({"content": "lo"})))
    stored = harness.seed({"model": "m", "input": "hi", "background": True}, RunMode.WORKER)

    async with harness.started(stored, RunMode.WORKER) as (task, sink):
        await reached(hold.reached)
        ended = await store.finish(stored.id, Outcome(ResponseStatus.CANCELLED, []))
        assert ended is not None
        hold.release.set()
        async with asyncio.timeout(WAIT_S):
            final = await task

    assert final.status == ResponseStatus.CANCELLED
    assert final.output == []
    assert store.response(stored.id) == final
    # The turn ran to its end, but its ending was not announced.
    assert text_deltas(sink.events) == "Hello"
    assert sink.types[-1] == "response.output_item.done"
    [step] = store.step_list(stored.id)
    assert step.status == StepStatus.COMPLETED


async def test_the_response_timeout_fails_the_response(
    harness: Harness, upstream: ScriptedUpstream, store: MemoryStore
) -> None:
    harness.configure(response_timeout_s=0.05)
    reply, _ = held_text("Hel")  # never released: only the deadline ends this run
    upstream.then(reply)

    run = await harness.run({"model": "m", "input": "hi"})

    assert run.final.status == ResponseStatus.FAILED
    assert run.final.error == {
        "code": "timeout",
        "message": "the response took longer than 0.05s",
    }
    assert run.types[-2:] == ["error", "response.failed"]
    assert run.events[-2]["error"]["code"] == "timeout"
    assert_valid_events(run.events)
    [message] = run.output
    assert message["status"] == "incomplete"
    assert message["content"][0]["text"] == "Hel"
    [step] = run.steps
    assert step.status == StepStatus.CANCELLED
    assert upstream.bodies[0].closed


async def test_the_response_timeout_stops_a_tool_call(
    harness: Harness, upstream: ScriptedUpstream, tools: ToolHost
) -> None:
    harness.configure(response_timeout_s=0.05)
    block_tool(tools, "current_time")
    upstream.then(calls_reply(TIME))

    run = await harness.run({"model": "m", "input": "Time?"})

    assert run.final.status == ResponseStatus.FAILED
    assert run.final.error is not None and run.final.error["code"] == "timeout"
    assert [item["type"] for item in run.output] == ["function_call"]
    _, tool = run.steps
    assert tool.status == StepStatus.CANCELLED
    assert tool.error is not None and tool.error["code"] == ABANDONED_CODE
    assert len(upstream.requests) == 1


@pytest.mark.parametrize("cut_in", ["model_turn", "tool_call"])
async def test_the_response_timeout_closes_the_item_it_cuts_off(
    harness: Harness, upstream: ScriptedUpstream, tools: ToolHost, cut_in: str
) -> None:
    harness.configure(response_timeout_s=0.05)
    if cut_in == "model_turn":
        reply, _ = held_text("Hel")
        upstream.then(reply)
    else:
        block_tool(tools, "current_time")
        upstream.then(calls_reply(TIME))

    run = await harness.run({"model": "m", "input": "hi"})

    assert run.final.status == ResponseStatus.FAILED
    assert_well_formed(run.events)


async def test_cancel_before_the_upstream_answers_keeps_no_output(
    harness: Harness, upstream: ScriptedUpstream, store: MemoryStore
) -> None:
    waiting = Hold()
    upstream.then(Reply(before=waiting))
    stored = harness.seed({"model": "m", "input": "hi"})

    row, sink = await run_cancelled_at(harness, stored, waiting.reached)

    assert row.status == ResponseStatus.CANCELLED
    assert row.output == []
    assert row.usage is None
    assert sink.types == ["response.created", "response.in_progress"]
    [step] = store.step_list(stored.id)
    assert step.status == StepStatus.CANCELLED
    assert step.result == {"items": []}
