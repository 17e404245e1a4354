"""The console's timeline of a response: attempts counted from runs of the loop, a worker's
death told as a stopped attempt, a recovery's new job as queued again, and each step in the
attempt that ran it; and the execution modes the list filters by."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.engine.console_timeline import EntryKind, Mode, build_timeline
from app.engine.run_state import ABANDONED
from app.statuses import ResponseStatus, StepKind, StepStatus
from app.store.console import JobEvent
from app.store.rows import StoredResponse, StoredStep

T0 = datetime(2025, 11, 23, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def response(**fields: Any) -> StoredResponse:
    base = StoredResponse(
        id="resp_1",
        owner="",
        status=ResponseStatus.COMPLETED,
        request={"model": "demo", "input": []},
        model="demo",
        service_tier="auto",
        background=True,
        stream=False,
        previous_response_id=None,
        output=[],
        usage=None,
        usage_missing=False,
        error=None,
        incomplete_details=None,
        lease_owner=None,
        lease_expires_at=None,
        created_at=at(0),
        started_at=at(1),
        completed_at=at(10),
        updated_at=at(10),
    )
    return dataclasses.replace(base, **fields)


def step(ordinal: int, started: float, **fields: Any) -> StoredStep:
    base = StoredStep(
        response_id="resp_1",
        ordinal=ordinal,
        kind=StepKind.MODEL_CALL,
        status=StepStatus.COMPLETED,
        request={"model": "demo", "message_count": 1},
        result={"items": []},
        usage=None,
        error=None,
        started_at=at(started),
        completed_at=at(started + 0.5),
    )
    return dataclasses.replace(base, **fields)


def job(job_id: int, kind: str, seconds: float) -> JobEvent:
    return JobEvent(job_id=job_id, queue="responses", type=kind, at=at(seconds))


def test_a_background_response_is_created_queued_picked_up_worked_and_ended() -> None:
    timeline = build_timeline(
        response(),
        [step(0, 2)],
        [job(7, "deferred", 0), job(7, "started", 1), job(7, "succeeded", 10.1)],
    )
    kinds = [entry.kind for entry in timeline.entries]
    assert kinds == [
        EntryKind.CREATED,
        EntryKind.QUEUED,
        EntryKind.PICKED_UP,
        EntryKind.STEP,
        EntryKind.ENDED,
        EntryKind.JOB,
    ]
    assert timeline.attempts == 1
    assert timeline.entries[2].title == "picked up (attempt 1)"
    [view] = timeline.steps
    assert (view.name, view.attempt, view.duration_s) == ("model turn", 1, 0.5)


def test_a_worker_that_died_is_a_stopped_attempt_and_each_step_keeps_its_attempt() -> None:
    cut = step(0, 2, status=StepStatus.CANCELLED, error=ABANDONED, completed_at=at(4))
    redone = step(1, 6)
    timeline = build_timeline(
        response(),
        [cut, redone],
        [
            job(7, "deferred", 0),
            job(7, "started", 1),
            job(7, "deferred_for_retry", 5),
            job(7, "started", 5.5),
            job(7, "succeeded", 10),
        ],
    )
    assert timeline.attempts == 2
    assert [(v.attempt, v.abandoned) for v in timeline.steps] == [(1, True), (2, False)]
    titles = [entry.title for entry in timeline.entries]
    assert titles.index("attempt 1 stopped") < titles.index("picked up (attempt 2)")
    assert titles.index("picked up (attempt 2)") < titles.index("completed")


def test_a_response_the_sweep_queued_again_shows_its_new_job() -> None:
    timeline = build_timeline(
        response(),
        [],
        [job(7, "deferred", 0), job(7, "started", 1), job(7, "failed", 2), job(9, "deferred", 3)],
    )
    queued = [entry for entry in timeline.entries if entry.kind is EntryKind.QUEUED]
    assert [entry.title for entry in queued] == ["queued", "queued again"]
    assert "job 9" in queued[1].detail and "recovery sweep" in queued[1].detail


def test_an_inline_response_handed_to_a_worker_runs_its_second_attempt_there() -> None:
    handed = response(background=False, stream=True)
    timeline = build_timeline(
        handed, [step(0, 0.5), step(1, 8)], [job(3, "deferred", 6), job(3, "started", 7)]
    )
    assert timeline.entries[1].title == "run inline (attempt 1)"
    assert [v.attempt for v in timeline.steps] == [1, 2]
    assert timeline.attempts == 2


def test_a_response_never_picked_up_has_no_attempt() -> None:
    waiting = response(status=ResponseStatus.QUEUED, started_at=None, completed_at=None)
    timeline = build_timeline(waiting, [], [job(7, "deferred", 0)])
    assert timeline.attempts == 0
    assert [entry.kind for entry in timeline.entries] == [EntryKind.CREATED, EntryKind.QUEUED]


def test_a_failure_ends_the_timeline_with_its_code_and_message() -> None:
    failed = response(
        status=ResponseStatus.FAILED, error={"code": "timeout", "message": "took too long"}
    )
    ended = build_timeline(failed, [], []).entries[-1]
    assert (ended.kind, ended.title, ended.detail) == (
        EntryKind.ENDED,
        "failed",
        "timeout: took too long",
    )


@pytest.mark.parametrize(
    ("request_", "name"),
    [
        ({"type": "function_call", "name": "pay", "arguments": "{}"}, "tool call: pay"),
        ({"type": "mcp_call", "name": "search", "arguments": "{}"}, "MCP call: search"),
        ({"mcp_list_tools": "docs", "server_url": "http://x"}, "MCP tool listing: docs"),
        (
            {"type": "function_call", "name": "pay", "skipped": "max_tool_calls"},
            "tool call: pay (not run)",
        ),
    ],
)
def test_tool_steps_are_named_for_what_they_did(request_: dict[str, Any], name: str) -> None:
    tool = step(0, 2, kind=StepKind.TOOL_CALL, request=request_)
    assert build_timeline(response(), [tool], []).steps[0].name == name


def test_every_response_has_exactly_the_mode_its_flags_say() -> None:
    for background, stream, tier in itertools.product(
        (False, True), (False, True), ("auto", "default", "flex")
    ):
        flex = tier == "flex"
        matching = [
            mode
            for mode in Mode
            if all(
                wanted is None or wanted == actual
                for wanted, actual in zip(mode.matches, (background, stream, flex), strict=True)
            )
        ]
        assert matching == [Mode.of(background, stream, tier)], (background, stream, tier)
