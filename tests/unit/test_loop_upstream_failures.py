"""How the loop ends when the upstream fails: retried before the first token, never after
it inline, and redone whole in a worker (the cut item closed `incomplete` in the stream)."""

from __future__ import annotations

import logging

import httpx
import pytest

from app.engine.loop import RunMode
from app.engine.run_state import ABANDONED_CODE
from app.statuses import ResponseStatus, StepKind, StepStatus
from tests.support.schema import assert_valid_events, assert_valid_response
from tests.unit.harness import Harness
from tests.unit.streams import assert_well_formed, done_items, text_deltas
from tests.unit.upstream import (
    DONE,
    Reply,
    ScriptedUpstream,
    TokenUsage,
    ToolCall,
    call_chunks,
    calls_reply,
    chunk,
    completion,
    cut,
    error_chunk,
    scored_text_chunks,
    status,
    text_chunks,
    text_reply,
    token_logprob,
    unreachable,
)

MAX_ATTEMPTS = 3  # unit_settings' upstream_max_attempts


def error_event_payload(code: str, message: str) -> dict[str, object]:
    return {"type": "server_error", "code": code, "message": message, "param": None}


# --- before the first token ------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [status(503), status(429), status(500), status(408), unreachable()],
    ids=["503", "429", "500", "408", "unreachable"],
)
async def test_failures_before_the_first_token_are_retried_unseen(
    harness: Harness, upstream: ScriptedUpstream, failure: Reply
) -> None:
    upstream.then(failure, failure, text_reply("Hello"))

    run = await harness.run({"model": "m", "input": "hi"})

    assert run.final.status == ResponseStatus.COMPLETED
    assert len(upstream.requests) == MAX_ATTEMPTS
    assert upstream.requests[0] == upstream.requests[-1]
    assert run.types.count("response.created") == 1
    assert "error" not in run.types
    assert text_deltas(run.events) == "Hello"
    assert [s.kind for s in run.steps] == [StepKind.MODEL_CALL]


@pytest.mark.parametrize(
    ("failure", "code", "message"),
    [
        (status(503), "upstream_error", "upstream returned 503: overloaded (after 3 attempts)"),
        (
            Reply(raises=httpx.ReadTimeout("silence")),
            "upstream_timeout",
            "upstream timed out (ReadTimeout) (after 3 attempts)",
        ),
        (
            unreachable(),
            "upstream_error",
            "upstream connection failed: ConnectError('connection refused') (after 3 attempts)",
        ),
    ],
    ids=["503", "read-timeout", "unreachable"],
)
async def test_giving_up_after_the_last_attempt_fails_with_an_error_event(
    harness: Harness, upstream: ScriptedUpstream, failure: Reply, code: str, message: str
) -> None:
    upstream.then(*[failure] * MAX_ATTEMPTS)

    run = await harness.run({"model": "m", "input": "hi"})

    assert len(upstream.requests) == MAX_ATTEMPTS
    assert run.final.status == ResponseStatus.FAILED
    assert run.final.error == {"code": code, "message": message}
    assert run.output == []
    assert run.types == [
        "response.created",
        "response.in_progress",
        "error",
        "response.failed",
    ]
    assert run.events[2]["error"] == error_event_payload(code, message)
    assert run.events[3]["response"]["error"] == {"code": code, "message": message}
    assert_valid_events(run.events)
    assert_valid_response(run.response)
    [step] = run.steps
    assert step.status == StepStatus.FAILED
    assert step.error == {"code": code, "message": message}


async def test_client_errors_are_not_retried(harness: Harness, upstream: ScriptedUpstream) -> None:
    upstream.then(status(400, "bad model"))

    run = await harness.run({"model": "m", "input": "hi"})

    assert len(upstream.requests) == 1
    assert run.final.status == ResponseStatus.FAILED
    assert run.final.error == {
        "code": "upstream_error",
        "message": "upstream returned 400: bad model",
    }


async def test_a_refused_first_turn_is_kept_as_the_responses_refusal(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    upstream.then(*[status(429, "slow down", retry_after="0")] * MAX_ATTEMPTS)

    run = await harness.run({"model": "m", "input": "hi"})

    assert run.final.status == ResponseStatus.FAILED
    assert run.final.upstream_refusal == {
        "status": 429,
        "message": "slow down",
        "code": None,
        "param": None,
        "retry_after_s": 0.0,
    }
    assert harness.store.response(run.final.id).upstream_refusal == run.final.upstream_refusal


@pytest.mark.parametrize("failure", [status(503), unreachable()], ids=["5xx", "unreachable"])
async def test_only_a_4xx_is_a_refusal(
    harness: Harness, upstream: ScriptedUpstream, failure: Reply
) -> None:
    upstream.then(*[failure] * MAX_ATTEMPTS)

    run = await harness.run({"model": "m", "input": "hi"})

    assert run.final.status == ResponseStatus.FAILED
    assert run.final.upstream_refusal is None


async def test_a_refused_later_turn_is_no_refusal_of_the_response(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    upstream.then(
        calls_reply(ToolCall("lookup_weather", {"city": "Oslo"}, "call_oslo")),
        status(400, "context too long"),
    )

    run = await harness.run({"model": "m", "input": "hi"})

    assert run.final.status == ResponseStatus.FAILED
    assert run.final.error == {
        "code": "upstream_error",
        "message": "upstream returned 400: context too long",
    }
    assert run.final.upstream_refusal is None
    assert [item["type"] for item in run.output] == ["function_call", "function_call_output"]


async def test_retry_after_sets_the_delay(
    harness: Harness, upstream: ScriptedUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    # Jittered backoff would wait a random part of 0.5 s; the upstream asks for none.
    harness.configure(upstream_backoff_base_s=0.5, upstream_backoff_max_s=1.0)
    upstream.then(status(429, retry_after="0"), text_reply("ok"))

    with caplog.at_level(logging.WARNING, logger="app.engine.chat.client"):
        run = await harness.run({"model": "m", "input": "hi"})

    assert run.final.status == ResponseStatus.COMPLETED
    [retry] = [r for r in caplog.records if r.name == "app.engine.chat.client"]
    assert (vars(retry)["attempt"], vars(retry)["status"], vars(retry)["delay_s"]) == (1, 429, 0.0)


# --- after the first token, inline ------------------------------------------------------


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (cut(*text_chunks("Hel", "lo")), "stream ended without stop event"),
        (
            Reply([*text_chunks("Hel", "lo"), error_chunk("model crashed")]),
            "upstream error mid-stream: model crashed",
        ),
        (
            Reply([*text_chunks("Hel", "lo"), httpx.ReadError("connection reset")]),
            "upstream connection failed: ReadError('connection reset')",
        ),
        (
            Reply([*text_chunks("Hel", "lo"), b"data: {not json\n\n"]),
            "upstream sent a malformed chunk: '{not json'",
        ),
    ],
    ids=["cut", "error-chunk", "read-error", "malformed"],
)
async def test_inline_a_turn_broken_mid_stream_fails_the_response(
    harness: Harness, upstream: ScriptedUpstream, broken: Reply, message: str
) -> None:
    upstream.then(broken)

    run = await harness.run({"model": "m", "input": "hi"})

    # Tokens were shown: no second request could continue them.
    assert len(upstream.requests) == 1
    assert run.final.status == ResponseStatus.FAILED
    assert run.final.error == {"code": "upstream_error", "message": message}
    [message_item] = run.output
    assert message_item["status"] == "incomplete"
    assert message_item["content"][0]["text"] == "Hello"
    assert run.types[-5:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "error",
        "response.failed",
    ]
    assert run.events[-3]["item"] == message_item
    assert run.events[-2]["error"] == error_event_payload("upstream_error", message)
    assert_well_formed(run.events)
    assert_valid_events(run.events)
    assert_valid_response(run.response)
    [step] = run.steps
    assert step.status == StepStatus.FAILED


@pytest.mark.parametrize(
    ("body", "message"),
    [([DONE], "empty upstream stream"), ([], "empty upstream stream")],
    ids=["only-done", "no-body"],
)
async def test_an_empty_stream_fails(
    harness: Harness, upstream: ScriptedUpstream, body: list[bytes], message: str
) -> None:
    upstream.then(Reply(list(body)))

    run = await harness.run({"model": "m", "input": "hi"})

    assert run.final.status == ResponseStatus.FAILED
    assert run.final.error == {"code": "upstream_error", "message": message}
    assert run.output == []
    assert len(upstream.requests) == 1


async def test_a_call_resumed_after_a_later_one_fails_the_turn(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    first, second = (
        ToolCall("lookup_weather", {"city": "Oslo"}, "c0"),
        ToolCall("current_time", {}, "c1"),
    )
    interleaved = chunk({"tool_calls": [{"index": 0, "function": {"arguments": " "}}]})
    upstream.then(
        Reply([*call_chunks(first), *call_chunks(second, first_index=1), interleaved, DONE])
    )

    run = await harness.run({"model": "m", "input": "hi"})

    assert run.final.status == ResponseStatus.FAILED
    assert run.final.error == {
        "code": "upstream_error",
        "message": "upstream sent more of tool call 0 after a later one",
    }
    # The first call was closed when the second began; the second is cut off.
    assert [(i["call_id"], i["status"]) for i in run.output] == [
        ("c0", "completed"),
        ("c1", "incomplete"),
    ]
    assert harness.tools.calls == []
    assert_well_formed(run.events)


# --- after the first token, in a worker -------------------------------------------------


async def test_in_a_worker_a_turn_cut_mid_stream_is_redone(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    upstream.then(
        cut(*text_chunks("Hel")),
        text_reply("Hello", " again", usage=TokenUsage(8, 2)),
    )
    stored = harness.seed({"model": "m", "input": "hi", "background": True}, RunMode.WORKER)

    run = await harness.run(stored, RunMode.WORKER)

    assert run.final.status == ResponseStatus.COMPLETED
    assert len(upstream.requests) == 2
    assert upstream.requests[0] == upstream.requests[1]
    # The stream shows the cut item closed incomplete, then the redone one after it: a
    # client following the stream (the SDK's helper) never sees an index announced twice.
    cut_item, redone = done_items(run.events)
    assert cut_item["status"] == "incomplete"
    assert cut_item["content"][0]["text"] == "Hel"
    assert redone["status"] == "completed"
    assert cut_item["id"] != redone["id"]
    added = run.of_type("response.output_item.added")
    assert [e["output_index"] for e in added] == [0, 1]
    assert "error" not in run.types
    assert run.types[-1] == "response.completed"
    assert_well_formed(run.events)
    assert_valid_events(run.events)
    # The final output holds the redone item only.
    assert run.output == [redone]
    assert run.events[-1]["response"]["output"] == [redone]
    assert run.final.usage == TokenUsage(8, 2).responses()
    cut_step, done_step = run.steps
    assert cut_step.status == StepStatus.CANCELLED
    assert cut_step.error is not None and cut_step.error["code"] == ABANDONED_CODE
    assert cut_step.result == {"items": []}
    assert done_step.status == StepStatus.COMPLETED


async def test_in_a_worker_a_cut_item_keeps_its_logprobs_and_the_redone_one_has_its_own(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    first, second = token_logprob("Hel", -0.4), token_logprob("Hello", -0.1)
    upstream.then(cut(*scored_text_chunks(first)), completion(*scored_text_chunks(second)))
    include = ["message.output_text.logprobs"]
    stored = harness.seed({"model": "m", "input": "hi", "include": include}, RunMode.WORKER)

    run = await harness.run(stored, RunMode.WORKER)

    cut_item, redone = done_items(run.events)
    assert (cut_item["status"], cut_item["content"][0]["logprobs"]) == ("incomplete", [first])
    assert redone["content"][0]["logprobs"] == [second]
    assert run.output == [redone]
    assert_valid_events(run.events)


async def test_in_a_worker_a_turn_cut_on_every_attempt_fails(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    upstream.then(*[cut(*text_chunks(f"try {n}")) for n in range(1, MAX_ATTEMPTS + 1)])
    stored = harness.seed({"model": "m", "input": "hi", "background": True}, RunMode.WORKER)

    run = await harness.run(stored, RunMode.WORKER)

    assert len(upstream.requests) == MAX_ATTEMPTS
    assert run.final.status == ResponseStatus.FAILED
    assert run.final.error == {
        "code": "upstream_error",
        "message": "stream ended without stop event",
    }
    closed = done_items(run.events)
    assert [i["content"][0]["text"] for i in closed] == ["try 1", "try 2", "try 3"]
    assert all(i["status"] == "incomplete" for i in closed)
    # The last try is the one the response keeps.
    assert run.output == [closed[-1]]
    assert [s.status for s in run.steps] == [
        StepStatus.CANCELLED,
        StepStatus.CANCELLED,
        StepStatus.FAILED,
    ]
    assert_well_formed(run.events)


async def test_in_a_worker_a_cut_turn_after_a_tool_round_keeps_the_round(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    call = ToolCall("current_time", {}, "call_time")
    upstream.then(
        calls_reply(call),
        Reply([*text_chunks("It is"), error_chunk("overloaded")]),
        text_reply("It is noon."),
    )
    stored = harness.seed({"model": "m", "input": "Time?", "background": True}, RunMode.WORKER)

    run = await harness.run(stored, RunMode.WORKER)

    assert run.final.status == ResponseStatus.COMPLETED
    assert [i["type"] for i in run.output] == ["function_call", "function_call_output", "message"]
    assert run.output[2]["content"][0]["text"] == "It is noon."
    assert len(harness.tools.calls) == 1
    # The redo is sent the same conversation as the cut turn.
    assert upstream.requests[1] == upstream.requests[2]
    assert_well_formed(run.events)
