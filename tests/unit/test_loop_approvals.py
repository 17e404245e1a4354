"""MCP approvals: a call that needs approval ends the response with an
`mcp_approval_request`; the response that continues it runs an approved call once (also
across a crash) or tells the model of a denial; an answer that names no request of the
conversation, or one answered before, is refused at the door.

The MCP server is a fake (`tests.unit.mcp_host`).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from openai.types.responses.response_output_item import McpApprovalRequest, McpCall

from app.engine.approvals import check_approval_answers
from app.engine.errors import RequestError
from app.engine.request import parse_create_request
from app.engine.tools import mcp_client
from app.statuses import ResponseStatus, StepKind, StepStatus
from tests.support.memory_store import at_write
from tests.unit.harness import Harness, Run
from tests.unit.mcp_host import SERVER_URL, FakeMcp
from tests.unit.streams import assert_well_formed, done_items
from tests.unit.upstream import ScriptedUpstream, ToolCall, calls_reply, last_message, text_reply

ADD = ToolCall("add", {"a": 1, "b": 2}, "call_add")
FAIL = ToolCall("fail", {"reason": "no"}, "call_fail")


def mcp_tool(**fields: Any) -> dict[str, Any]:
    """The calc server; `require_approval` left out (its default) unless given."""
    return {"type": "mcp", "server_label": "calc", "server_url": SERVER_URL, **fields}


@pytest.fixture
def mcp(monkeypatch: pytest.MonkeyPatch) -> FakeMcp:
    return FakeMcp().install(monkeypatch)


def answer(request: dict[str, Any], approve: bool, **fields: Any) -> dict[str, Any]:
    return {
        "type": "mcp_approval_response",
        "approval_request_id": request["id"],
        "approve": approve,
        **fields,
    }


def continuation(first: Run, *answers: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body = {
        "model": "m",
        "input": list(answers),
        "previous_response_id": first.final.id,
        "tools": [mcp_tool()],
    }
    return {**body, **fields}


async def asked_for_approval(harness: Harness, upstream: ScriptedUpstream) -> tuple[Run, Any]:
    """A first response whose model calls `add`, which waits for approval: the run and
    its approval request."""
    upstream.then(calls_reply(ADD))
    first = await harness.run({"model": "m", "input": "Add", "tools": [mcp_tool()]})
    [request] = [item for item in first.output if item["type"] == "mcp_approval_request"]
    return first, request


async def test_a_call_that_needs_approval_ends_the_response_with_a_request(
    harness: Harness, upstream: ScriptedUpstream, mcp: FakeMcp
) -> None:
    first, request = await asked_for_approval(harness, upstream)

    assert first.final.status == ResponseStatus.COMPLETED
    assert [item["type"] for item in first.output] == ["mcp_list_tools", "mcp_approval_request"]
    # OpenAI's shape, field for field: no status, no output.
    assert McpApprovalRequest.model_validate(request).to_dict() == request
    assert request["id"].startswith("mcpr_")
    assert (request["server_label"], request["name"]) == ("calc", "add")
    assert json.loads(request["arguments"]) == {"a": 1, "b": 2}
    assert mcp.calls == []
    assert len(upstream.requests) == 1
    # Shown whole: added, then done, with no argument events of its own.
    approval_events = [
        e["type"]
        for e in first.events
        if e.get("item", {}).get("id") == request["id"] or e.get("item_id") == request["id"]
    ]
    assert approval_events == ["response.output_item.added", "response.output_item.done"]
    assert done_items(first.events) == first.output
    assert_well_formed(first.events)


async def test_an_approved_call_runs_once_and_the_model_reads_its_result(
    harness: Harness, upstream: ScriptedUpstream, mcp: FakeMcp
) -> None:
    first, request = await asked_for_approval(harness, upstream)
    upstream.then(text_reply("1 + 2 = 3."))

    second = await harness.run(continuation(first, answer(request, True)))

    assert second.final.status == ResponseStatus.COMPLETED
    assert mcp.calls == [("add", {"a": 1, "b": 2})]
    listing, call, message = second.output
    assert listing["type"] == "mcp_list_tools"
    assert McpCall.model_validate(call).to_dict() == call
    assert call["approval_request_id"] == request["id"]
    assert (call["name"], call["arguments"], call["output"]) == ("add", request["arguments"], "3")
    assert (call["status"], call["error"]) == ("completed", None)
    assert message["content"][0]["text"] == "1 + 2 = 3."
    # The model sees its call (the request) answered by the result.
    messages = upstream.requests[1]["messages"]
    assert messages[-2]["tool_calls"][0]["id"] == request["id"]
    assert last_message(upstream.requests[1]) == {
        "role": "tool",
        "tool_call_id": request["id"],
        "content": "3",
    }
    # The approved call's item is announced by its own step, in OpenAI's order.
    call_events = [
        e["type"]
        for e in second.events
        if call["id"] in (e.get("item_id"), e.get("item", {}).get("id"))
    ]
    assert call_events == [
        "response.output_item.added",
        "response.mcp_call.in_progress",
        "response.mcp_call.completed",
        "response.output_item.done",
    ]
    assert done_items(second.events) == second.output
    assert_well_formed(second.events)
    assert [s.kind for s in second.steps] == [
        StepKind.TOOL_CALL,  # the listing
        StepKind.TOOL_CALL,  # the approved call
        StepKind.MODEL_CALL,
    ]


async def test_a_denied_call_does_not_run_and_the_model_is_told(
    harness: Harness, upstream: ScriptedUpstream, mcp: FakeMcp
) -> None:
    first, request = await asked_for_approval(harness, upstream)
    upstream.then(text_reply("I may not add."))

    second = await harness.run(continuation(first, answer(request, False, reason="not today")))

    assert second.final.status == ResponseStatus.COMPLETED
    assert mcp.calls == []
    assert [item["type"] for item in second.output] == ["mcp_list_tools", "message"]
    told = last_message(upstream.requests[1])
    assert (told["role"], told["tool_call_id"]) == ("tool", request["id"])
    denial = json.loads(told["content"])["error"]
    assert "not approved" in denial and "not today" in denial


async def test_an_unanswered_request_is_told_as_a_call_that_did_not_run(
    harness: Harness, upstream: ScriptedUpstream, mcp: FakeMcp
) -> None:
    first, request = await asked_for_approval(harness, upstream)
    upstream.then(text_reply("Fine."))

    second = await harness.run(continuation(first, {"role": "user", "content": "Never mind."}))

    assert second.final.status == ResponseStatus.COMPLETED
    assert mcp.calls == []
    messages = upstream.requests[1]["messages"]
    call_at = next(i for i, m in enumerate(messages) if m.get("tool_calls"))
    # The result comes right after the call, before the user's new message.
    assert messages[call_at + 1]["tool_call_id"] == request["id"]
    assert "did not run" in json.loads(messages[call_at + 1]["content"])["error"]
    assert messages[-1] == {"role": "user", "content": "Never mind."}


@pytest.mark.parametrize(
    ("require_approval", "waiting"),
    [
        ("always", {"add", "fail"}),
        (None, {"add", "fail"}),  # null is the default: always
        ("never", set()),
        ({"never": {"tool_names": ["add"]}}, {"fail"}),
        ({"always": {"tool_names": ["add"]}}, {"add", "fail"}),  # unselected tools wait
        ({"always": {"tool_names": ["fail"]}, "never": {"tool_names": ["add"]}}, {"fail"}),
        ({"never": {"read_only": True}}, {"fail"}),  # `add` is annotated read-only
        ({"always": {"read_only": False}, "never": {}}, {"fail"}),
        ({"always": {"tool_names": ["add"]}, "never": {"tool_names": ["add"]}}, {"add", "fail"}),
    ],
)
async def test_require_approval_decides_per_tool(
    harness: Harness,
    upstream: ScriptedUpstream,
    mcp: FakeMcp,
    require_approval: Any,
    waiting: set[str],
) -> None:
    upstream.then(calls_reply(ADD, FAIL), text_reply("Done."))
    tool = mcp_tool(require_approval=require_approval, allowed_tools=["add", "fail"])

    run = await harness.run({"model": "m", "input": "Both", "tools": [tool]})

    assert run.final.status == ResponseStatus.COMPLETED
    requested = {i["name"] for i in run.output if i["type"] == "mcp_approval_request"}
    assert requested == waiting
    assert {name for name, _ in mcp.calls} == {"add", "fail"} - waiting
    # Free calls ran; a turn that asked for approval is the last one.
    assert len(upstream.requests) == (1 if waiting else 2)
    assert_well_formed(run.events)


async def test_a_crash_after_the_approved_call_finished_does_not_repeat_it(
    harness: Harness, upstream: ScriptedUpstream, mcp: FakeMcp
) -> None:
    first, request = await asked_for_approval(harness, upstream)
    # Asked twice: the turn's request goes out with its step's row, as the crash comes.
    upstream.then(text_reply("3."), text_reply("3."))
    body = {**continuation(first, answer(request, True)), "background": True}

    # Dies as the model turn after the call starts: the call's step is recorded.
    run, log = await harness.crash_and_resume(body, at_write("start_step", 2))

    assert run.final.status == ResponseStatus.COMPLETED
    assert mcp.calls == [("add", {"a": 1, "b": 2})]
    assert [i["type"] for i in run.output] == ["mcp_list_tools", "mcp_call", "message"]
    assert run.output[1]["output"] == "3"
    assert [s.status for s in run.steps] == [StepStatus.COMPLETED] * 3
    assert_well_formed(log)


async def test_an_approved_call_cut_off_is_redone_into_the_same_item(
    harness: Harness, upstream: ScriptedUpstream, mcp: FakeMcp
) -> None:
    first, request = await asked_for_approval(harness, upstream)
    upstream.then(text_reply("3."))
    body = {**continuation(first, answer(request, True)), "background": True}

    # Dies while the call's result is being recorded: the call is cut off.
    run, log = await harness.crash_and_resume(body, at_write("finish_step", 1))

    assert run.final.status == ResponseStatus.COMPLETED
    assert len(mcp.calls) == 2  # MCP has no idempotency key: a cut-off call is made again
    _, call, _ = run.output
    assert (call["status"], call["output"]) == ("completed", "3")
    added = [e["item"]["id"] for e in log if e["type"] == "response.output_item.added"]
    assert added.count(call["id"]) == 1  # announced once, completed in place
    assert_well_formed(log)


async def test_an_approval_is_not_run_again_by_a_later_response(
    harness: Harness, upstream: ScriptedUpstream, mcp: FakeMcp
) -> None:
    first, request = await asked_for_approval(harness, upstream)
    upstream.then(text_reply("3."), text_reply("Still 3."))
    second = await harness.run(continuation(first, answer(request, True)))

    third = await harness.run(
        {
            "model": "m",
            "input": "And now?",
            "previous_response_id": second.final.id,
            "tools": [mcp_tool()],
        }
    )

    assert third.final.status == ResponseStatus.COMPLETED
    assert len(mcp.calls) == 1
    messages = upstream.requests[2]["messages"]
    results = [m for m in messages if m["role"] == "tool"]
    assert results == [{"role": "tool", "tool_call_id": request["id"], "content": "3"}]


# --- answers checked at the door -------------------------------------------------------------


async def check(harness: Harness, body: dict[str, Any]) -> None:
    """What the API checks of a create `body`'s approval answers before accepting it."""
    request, items = parse_create_request(body)
    await check_approval_answers(
        items,
        request.tools,
        owner="",
        previous_response_id=request.previous_response_id,
        reader=harness.store,
    )


async def test_an_answer_to_a_request_of_the_conversation_is_accepted(
    harness: Harness, upstream: ScriptedUpstream, mcp: FakeMcp
) -> None:
    first, request = await asked_for_approval(harness, upstream)

    await check(harness, continuation(first, answer(request, True)))
    await check(harness, continuation(first, answer(request, False), tools=[]))
    # Without `previous_response_id`, the request may come in the same input.
    await check(
        harness, {"model": "m", "input": [request, answer(request, True)], "tools": [mcp_tool()]}
    )


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unknown id", "No approval request with id 'mcpr_unknown'"),
        ("answered twice", "already answered"),
        ("answered before", "already answered"),
        ("server not in tools", "include that server in `tools`"),
        ("cut off", "cut off"),
    ],
)
async def test_a_bad_answer_is_a_400_naming_it(
    harness: Harness, upstream: ScriptedUpstream, mcp: FakeMcp, case: str, message: str
) -> None:
    first, request = await asked_for_approval(harness, upstream)
    approve = answer(request, True)
    body = continuation(first, {"role": "user", "content": "Go"}, approve)
    if case == "unknown id":
        body["input"][1] = {**approve, "approval_request_id": "mcpr_unknown"}
    elif case == "answered twice":
        body["input"][0] = answer(request, False)
    elif case == "answered before":
        upstream.then(text_reply("3."))
        second = await harness.run(continuation(first, approve))
        body = continuation(second, {"role": "user", "content": "Again"}, approve)
    elif case == "server not in tools":
        body["tools"] = [{**mcp_tool(), "server_label": "other"}]
    else:
        cut = {**request, "status": "incomplete"}
        body = {"model": "m", "input": [cut, {"role": "user", "content": "Go"}, approve]}
        body["tools"] = [mcp_tool()]

    with pytest.raises(RequestError) as refused:
        await check(harness, body)

    at = 2 if case == "cut off" else 1
    assert refused.value.param == f"input[{at}].approval_request_id"
    assert message in refused.value.message


async def test_an_approved_call_cut_off_by_the_end_of_the_response_shows_as_incomplete(
    harness: Harness, upstream: ScriptedUpstream, mcp: FakeMcp, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, request = await asked_for_approval(harness, upstream)

    async def never_answers(*args: object, **kwargs: object) -> tuple[str | None, str | None]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    monkeypatch.setattr(mcp_client, "call_mcp_tool", never_answers)
    harness.configure(response_timeout_s=0.2)

    second = await harness.run(continuation(first, answer(request, True)))

    assert second.final.status == ResponseStatus.FAILED
    [call] = [item for item in second.output if item["type"] == "mcp_call"]
    assert (call["status"], call["approval_request_id"]) == ("incomplete", request["id"])
    assert done_items(second.events)[-1] == call
    assert_well_formed(second.events)
