"""A worker resuming a response after the process running it died (RunMode.WORKER over the
steps already stored): finished turns and tool calls are not repeated, a step left
`in_progress` is marked abandoned and redone, and a cut-off call to a tool that is not safe
to retry fails the response.

A crash is the `MemoryStore` dying at a chosen write, as the database sees a `kill -9`:
whatever was committed stays, nothing after it arrives. The next attempt runs on
`store.restarted()`, with a new loop, as another worker would.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from app.engine.chat.usage import add_usage
from app.engine.loop import HAND_BACK, RunMode
from app.engine.run_state import ABANDONED_CODE, output_of_steps
from app.shapes import Event
from app.statuses import ResponseStatus, StepKind, StepStatus
from tests.support.memory_store import MemoryStore, Write, at_number, at_write
from tests.unit.harness import Harness, Run, unit_settings
from tests.unit.streams import WAIT_S, assert_numbered_from, assert_well_formed
from tests.unit.tool_host import ToolCallSeen, ToolHost
from tests.unit.upstream import (
    Reply,
    ScriptedUpstream,
    ToolCall,
    calls_reply,
    last_message,
    text_reply,
)

PAY = ToolCall("pay", {"n": 7}, "call_pay")
PAY_UNSAFE = ToolCall("pay_unsafe", {"n": 7}, "call_pay")
BACKGROUND = {"model": "m", "input": "Pay 7", "background": True, "stream": True}


def paying_model(*calls: ToolCall) -> Callable[[dict[str, Any]], Reply]:
    """A model that makes `calls` when the user spoke last, and reports the tool's output."""

    def answer(body: dict[str, Any]) -> Reply:
        last = last_message(body)
        if last["role"] == "user":
            return calls_reply(*calls)
        return text_reply("Paid: ", last["content"])

    return answer


async def pay_across_a_crash(
    harness: Harness, at: Callable[[Write], bool], call: ToolCall = PAY
) -> tuple[Run, list[Event]]:
    """A worker running the paying model's `call` dies at the write `at` accepts, and the
    next attempt resumes: its run, and the whole log a client streaming it saw."""
    harness.upstream.responder = paying_model(call)
    return await harness.crash_and_resume(BACKGROUND, at)


async def test_a_tool_call_cut_off_is_redone_with_the_same_key(
    harness: Harness, upstream: ScriptedUpstream, tools: ToolHost
) -> None:
    upstream.responder = paying_model(PAY)
    stored = harness.seed(BACKGROUND, RunMode.WORKER)

    # The worker dies while the tool's answer is on its way: the step stays in_progress.
    store, logged = await harness.crash(stored, at_write("finish_step", 1))
    assert [s.status for s in store.step_list(stored.id)] == [
        StepStatus.COMPLETED,
        StepStatus.IN_PROGRESS,
    ]
    run, log = await harness.resume(store, stored.id, logged)

    assert run.final.status == ResponseStatus.COMPLETED
    call, result, message = run.output
    assert json.loads(result["output"]) == {"paid": 7}
    assert message["content"][0]["text"] == f"Paid: {result['output']}"
    # The first turn was not asked again; the call was made again, with the same key.
    assert len(upstream.requests) == 2
    # A tool that deduplicates by that key applies the payment once.
    assert [c.idempotency_key for c in tools.calls] == ["call_pay", "call_pay"]
    assert call["call_id"] == "call_pay"
    # The cut step is marked abandoned, and the redone call is a new step.
    assert [(s.ordinal, s.kind, s.status) for s in run.steps] == [
        (0, StepKind.MODEL_CALL, StepStatus.COMPLETED),
        (1, StepKind.TOOL_CALL, StepStatus.CANCELLED),
        (2, StepKind.TOOL_CALL, StepStatus.COMPLETED),
        (3, StepKind.MODEL_CALL, StepStatus.COMPLETED),
    ]
    assert run.steps[1].error is not None and run.steps[1].error["code"] == ABANDONED_CODE
    # The resumed run starts where the log stopped, with what the stored steps hold.
    assert run.events[0]["type"] == "response.in_progress"
    assert [i["type"] for i in run.events[0]["response"]["output"]] == ["function_call"]
    assert "response.function_call_arguments.delta" not in run.types
    assert_numbered_from(log, 0)
    assert_well_formed(log)
    closed = [e["item"] for e in log if e["type"] == "response.output_item.done"]
    assert [(i["type"], i["status"]) for i in closed] == [
        ("function_call", "completed"),
        ("function_call_output", "incomplete"),  # the cut one, closed before the resume
        ("function_call_output", "completed"),
        ("message", "completed"),
    ]


async def test_a_cut_off_call_to_a_tool_not_safe_to_retry_fails_the_response(
    harness: Harness, upstream: ScriptedUpstream, tools: ToolHost
) -> None:
    run, log = await pay_across_a_crash(harness, at_write("finish_step", 1), PAY_UNSAFE)

    assert run.final.status == ResponseStatus.FAILED
    assert run.final.error == {
        "code": "step_abandoned",
        "message": "the call to tool 'pay_unsafe' was cut off and the tool is not safe to retry",
    }
    assert len(tools.calls) == 1  # not called again
    assert len(upstream.requests) == 1
    assert [i["type"] for i in run.output] == ["function_call"]
    assert run.types == ["response.in_progress", "error", "response.failed"]
    assert run.events[1]["error"]["code"] == "step_abandoned"
    assert_well_formed(log)


async def test_a_model_turn_cut_off_is_marked_abandoned_and_redone(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    upstream.then(text_reply("First try"), text_reply("Second try"))
    stored = harness.seed(BACKGROUND, RunMode.WORKER)

    # Dies after streaming the answer, before recording the step's end.
    store, logged = await harness.crash(stored, at_write("finish_step"))
    [cut] = store.step_list(stored.id)
    assert cut.status == StepStatus.IN_PROGRESS
    run, log = await harness.resume(store, stored.id, logged)

    assert run.final.status == ResponseStatus.COMPLETED
    assert len(upstream.requests) == 2
    [message] = run.output
    assert message["content"][0]["text"] == "Second try"
    abandoned, redone = run.steps
    assert abandoned.status == StepStatus.CANCELLED
    assert abandoned.error is not None and abandoned.error["code"] == ABANDONED_CODE
    assert redone.status == StepStatus.COMPLETED
    assert_well_formed(log)


async def test_finished_work_is_not_repeated(
    harness: Harness, upstream: ScriptedUpstream, tools: ToolHost
) -> None:
    """Dying after the tool call was recorded: the resume goes straight to the next turn."""
    run, log = await pay_across_a_crash(harness, at_write("start_step", 2))

    assert run.final.status == ResponseStatus.COMPLETED
    assert len(tools.calls) == 1
    # The second turn's request went out with its step's row (a model call has no effect to
    # guard) and is made again; the first turn's is not.
    assert [len(r["messages"]) for r in upstream.requests] == [1, 3, 3]
    assert [s.status for s in run.steps] == [StepStatus.COMPLETED] * 3
    assert run.types[0] == "response.in_progress"
    assert run.of_type("response.output_item.added")[0]["item"]["type"] == "message"
    assert_well_formed(log)


async def test_dying_before_the_ending_is_recorded_only_records_it(
    harness: Harness, upstream: ScriptedUpstream, tools: ToolHost
) -> None:
    run, log = await pay_across_a_crash(harness, at_write("finish"))

    assert run.final.status == ResponseStatus.COMPLETED
    assert len(upstream.requests) == 2
    assert len(tools.calls) == 1
    assert run.types == ["response.in_progress", "response.completed"]
    assert [i["type"] for i in run.output] == ["function_call", "function_call_output", "message"]
    assert_well_formed(log)


async def test_a_response_ended_before_the_crash_is_left_as_it_is(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    upstream.then(text_reply("Done"))

    run, _ = await harness.crash_and_resume(BACKGROUND, at_write("finish"), committed=True)

    assert run.final.status == ResponseStatus.COMPLETED
    assert run.final.output == run.store.response(run.final.id).output
    assert run.events == []
    assert len(upstream.requests) == 1


async def test_a_handed_back_tool_call_is_redone_on_resume(
    harness: Harness, upstream: ScriptedUpstream, tools: ToolHost
) -> None:
    """A worker shutting down cancels its run: the loop itself marks the call abandoned."""
    release = asyncio.Event()

    async def slow_pay(call: ToolCallSeen) -> httpx.Response:
        await release.wait()
        return httpx.Response(200, json={"paid": 7})

    tools.answer("pay", slow_pay)
    upstream.responder = paying_model(PAY)
    stored = harness.seed(BACKGROUND, RunMode.WORKER)
    async with harness.started(stored, RunMode.WORKER) as (task, _):
        async with asyncio.timeout(WAIT_S):
            await tools.arrived.wait()
        task.cancel(HAND_BACK)
        with pytest.raises(asyncio.CancelledError):
            await task
    assert harness.store.response(stored.id).status == ResponseStatus.IN_PROGRESS
    release.set()

    run = await harness.run(harness.store.response(stored.id), RunMode.WORKER)

    assert run.final.status == ResponseStatus.COMPLETED
    assert [c.idempotency_key for c in tools.calls] == ["call_pay", "call_pay"]
    assert len(upstream.requests) == 2
    assert [s.status for s in run.steps] == [
        StepStatus.COMPLETED,
        StepStatus.CANCELLED,
        StepStatus.COMPLETED,
        StepStatus.COMPLETED,
    ]
    assert run.steps[1].error is not None and run.steps[1].error["code"] == ABANDONED_CODE


@pytest.mark.parametrize("committed", [False, True], ids=["before-commit", "after-commit"])
@pytest.mark.parametrize(
    "calls",
    [[PAY], [PAY, ToolCall("pay", {"n": 8}, "call_pay_2")]],
    ids=["one-call", "parallel-calls"],
)
async def test_a_crash_at_any_write_resumes_to_the_same_response(
    committed: bool, calls: list[ToolCall], subtests: pytest.Subtests
) -> None:
    """The fault sweep: die at each write of a tool round in turn, and resume. The response
    always ends as an undisturbed run does; each call is made again at most once, with the
    same key; no turn is asked more than once again; the log a client streams is whole."""

    def setup() -> tuple[Harness, ScriptedUpstream, ToolHost]:
        upstream, tools = ScriptedUpstream(responder=paying_model(*calls)), ToolHost()
        return Harness(MemoryStore(), upstream, tools, unit_settings()), upstream, tools

    undisturbed, *_ = setup()
    reference = await undisturbed.run(BACKGROUND, RunMode.WORKER)
    await undisturbed.aclose()
    writes = undisturbed.store.writes
    assert reference.final.status == ResponseStatus.COMPLETED
    keys = sorted(call.call_id for call in calls)

    for write in writes:
        with subtests.test(write=write):
            harness, upstream, tools = setup()
            try:
                run, log = await harness.crash_and_resume(
                    BACKGROUND, at_number(write.number), committed=committed
                )
            finally:
                await harness.aclose()

            final = run.final
            assert final.status == ResponseStatus.COMPLETED
            output = final.output or []
            assert [i["type"] for i in output] == [i["type"] for i in reference.output]
            assert output[-1]["content"] == reference.output[-1]["content"]
            # Each call was made at least once, at most once more after a cut, always under
            # its call id: a tool that deduplicates by Idempotency-Key acts once per call.
            seen = sorted(c.idempotency_key for c in tools.calls)
            assert sorted(set(seen)) == keys
            assert all(seen.count(key) <= 2 for key in keys)
            assert 2 <= len(upstream.requests) <= 3  # a turn cut off is asked again, once
            steps = run.steps
            assert all(s.status != StepStatus.IN_PROGRESS for s in steps)
            assert output_of_steps(steps) == output
            usage = None
            for step in steps:
                usage = add_usage(usage, step.usage)
            assert final.usage == usage
            if run.events:  # none when the ending was committed before the crash
                assert_well_formed(log)
