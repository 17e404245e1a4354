"""How a response's output is assembled from its steps (`assemble_output`, `output_of_steps`),
and the state a resumed run rebuilds from them (`RunState.from_steps`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.engine.run_state import (
    ABANDONED,
    RunState,
    assemble_output,
    output_of_steps,
    settled,
)
from app.shapes import ErrorInfo, StepResult
from app.statuses import StepKind, StepStatus
from app.store.rows import StepOutcome, StoredStep
from tests.support.memory_store import MemoryStore
from tests.unit.upstream import TokenUsage


def message(item_id: str, text: str = "hi") -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def function_call(item_id: str, call_id: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "status": "completed",
        "call_id": call_id,
        "name": "lookup_weather",
        "arguments": "{}",
    }


def reasoning(item_id: str, text: str = "thinking", status: str = "completed") -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "reasoning",
        "summary": [],
        "content": [{"type": "reasoning_text", "text": text}],
        "status": status,
    }


def mcp_call(item_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "mcp_call",
        "status": "in_progress",
        "server_label": "calc",
        "name": "add",
        "arguments": "{}",
        "output": None,
        "error": None,
        **fields,
    }


def test_items_come_in_step_order() -> None:
    results: list[StepResult | None] = [
        {"items": [function_call("fc_1", "c1")]},
        None,  # a step that left nothing
        {"items": []},
        {"items": [message("msg_1")]},
    ]

    assert [item["id"] for item in assemble_output(results)] == ["fc_1", "msg_1"]


def test_an_mcp_call_is_completed_in_place() -> None:
    opened = mcp_call("mcp_1")
    completed = mcp_call("mcp_1", status="completed", output="3")
    listing = {"id": "mcpl_1", "type": "mcp_list_tools", "server_label": "calc", "tools": []}

    output = assemble_output(
        [
            {"items": [listing]},
            {"items": [message("msg_1", "Adding."), opened]},  # the model turn opens the call
            {"items": [completed]},  # its tool step completes it
            {"items": [message("msg_2", "It is 3.")]},
        ]
    )

    assert [item["id"] for item in output] == ["mcpl_1", "msg_1", "mcp_1", "msg_2"]
    assert output[2] == completed


@dataclass(frozen=True)
class Step:
    """A step to store: its kind, its status, what it was asked, and what it left."""

    kind: StepKind
    status: StepStatus
    request: dict[str, Any] = field(default_factory=dict)
    items: list[dict[str, Any]] = field(default_factory=list)
    error: ErrorInfo | None = None


def call_request(call_id: str, **extra: str) -> dict[str, Any]:
    return {"type": "function_call", "name": "lookup_weather", "call_id": call_id, **extra}


async def stored(*steps: Step) -> list[StoredStep]:
    """`steps` written through the store as the loop writes them, read back in order."""
    store = MemoryStore()
    response = store.seed({"model": "m", "input": "hi"})
    for ordinal, step in enumerate(steps):
        await store.start_step(response.id, ordinal, step.kind, step.request)
        if step.status != StepStatus.IN_PROGRESS:
            usage = TokenUsage(10, 2).responses() if step.kind == StepKind.MODEL_CALL else None
            await store.finish_step(
                response.id,
                ordinal,
                StepOutcome(step.status, {"items": step.items}, usage=usage, error=step.error),
            )
    return await store.steps(response.id)


async def test_abandoned_steps_are_left_out_and_others_kept() -> None:
    steps = await stored(
        Step(StepKind.MODEL_CALL, StepStatus.CANCELLED, items=[message("msg_0")], error=ABANDONED),
        Step(StepKind.MODEL_CALL, StepStatus.COMPLETED, items=[function_call("fc_1", "c1")]),
        # Skipped (max_tool_calls), not abandoned: its item stays.
        Step(
            StepKind.TOOL_CALL,
            StepStatus.CANCELLED,
            call_request("c1", skipped="limit"),
            [{"id": "fco_1", "type": "function_call_output", "call_id": "c1"}],
        ),
        Step(
            StepKind.MODEL_CALL,
            StepStatus.FAILED,
            items=[message("msg_cut")],
            error={"code": "upstream_error", "message": "cut"},
        ),
    )

    assert [item["id"] for item in output_of_steps(steps)] == ["fc_1", "fco_1", "msg_cut"]


async def test_a_step_abandoned_is_known_by_its_code_not_its_wording() -> None:
    reworded: ErrorInfo = {**ABANDONED, "message": "some other words"}
    steps = await stored(
        Step(StepKind.MODEL_CALL, StepStatus.CANCELLED, items=[message("msg_1")], error=reworded)
    )

    assert output_of_steps(steps) == []


async def test_the_state_a_crash_leaves_for_the_next_attempt() -> None:
    call = function_call("fc_1", "call_1")
    steps = await stored(
        Step(StepKind.MODEL_CALL, StepStatus.CANCELLED, error=ABANDONED),  # redone since
        Step(StepKind.MODEL_CALL, StepStatus.COMPLETED, items=[call]),
        Step(StepKind.TOOL_CALL, StepStatus.IN_PROGRESS, call_request("call_1")),  # cut off
    )

    state, cut = RunState.from_steps(steps)

    assert [step.ordinal for step in cut] == [2]
    assert state.next_ordinal == 3
    assert state.model_turns == 1  # the abandoned turn does not count
    assert state.last_turn is not None and state.last_turn.calls == [call]
    assert state.output == [call]
    assert state.answered == set()
    assert state.interrupted == {"call_1"}  # it may have had its effect
    assert state.tool_calls_run == 0
    # The abandoned turn's tokens were spent all the same.
    assert state.usage == TokenUsage(20, 4).responses()


async def test_a_call_abandoned_in_an_earlier_attempt_counts_as_interrupted() -> None:
    steps = await stored(
        Step(StepKind.MODEL_CALL, StepStatus.COMPLETED, items=[function_call("fc_1", "c1")]),
        Step(StepKind.TOOL_CALL, StepStatus.CANCELLED, call_request("c1"), error=ABANDONED),
    )

    state, cut = RunState.from_steps(steps)

    assert cut == []
    assert state.interrupted == {"c1"}
    assert state.answered == set()


async def test_the_state_of_finished_and_skipped_calls() -> None:
    steps = await stored(
        Step(
            StepKind.MODEL_CALL,
            StepStatus.COMPLETED,
            items=[function_call("fc_1", "c1"), function_call("fc_2", "c2")],
        ),
        Step(
            StepKind.TOOL_CALL,
            StepStatus.COMPLETED,
            call_request("c1"),
            [{"id": "fco_1", "type": "function_call_output", "call_id": "c1"}],
        ),
        Step(
            StepKind.TOOL_CALL,
            StepStatus.CANCELLED,
            call_request("c2", skipped="limit"),
            [{"id": "fco_2", "type": "function_call_output", "call_id": "c2"}],
        ),
    )

    state, cut = RunState.from_steps(steps)

    assert cut == []
    assert state.answered == {"c1", "c2"}
    assert state.skipped == {"c2"}
    assert state.tool_calls_run == 1
    assert state.interrupted == set()
    assert [item["id"] for item in state.output] == ["fc_1", "fc_2", "fco_1", "fco_2"]


async def test_reasoning_stays_before_what_its_turn_did_and_is_no_call() -> None:
    call = function_call("fc_1", "c1")
    steps = await stored(
        Step(StepKind.MODEL_CALL, StepStatus.COMPLETED, items=[reasoning("rs_1"), call]),
        Step(
            StepKind.TOOL_CALL,
            StepStatus.COMPLETED,
            call_request("c1"),
            [{"id": "fco_1", "type": "function_call_output", "call_id": "c1"}],
        ),
        Step(
            StepKind.MODEL_CALL,
            StepStatus.COMPLETED,
            items=[reasoning("rs_2", "now answer"), message("msg_1")],
        ),
    )

    state, _ = RunState.from_steps(steps)

    assert [item["id"] for item in output_of_steps(steps)] == [
        "rs_1",
        "fc_1",
        "fco_1",
        "rs_2",
        "msg_1",
    ]
    assert state.output == output_of_steps(steps)
    assert state.output[3]["content"] == [{"type": "reasoning_text", "text": "now answer"}]
    assert state.last_turn is not None and state.last_turn.calls == []
    assert state.model_turns == 2


async def test_reasoning_of_an_abandoned_turn_is_left_out() -> None:
    steps = await stored(
        Step(
            StepKind.MODEL_CALL,
            StepStatus.CANCELLED,
            items=[reasoning("rs_cut", "half", "incomplete")],
            error=ABANDONED,
        ),
        Step(StepKind.MODEL_CALL, StepStatus.COMPLETED, items=[reasoning("rs_1"), message("m")]),
    )

    assert [item["id"] for item in output_of_steps(steps)] == ["rs_1", "m"]


def test_reasoning_cut_off_in_progress_reads_incomplete_once_the_response_ends() -> None:
    [item] = settled([reasoning("rs_1", "half", "in_progress")])

    assert item == reasoning("rs_1", "half", "incomplete")
