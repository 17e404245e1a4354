"""The MCP branches of the loop: listing a server's tools, completing an `mcp_call` in place,
a tool's error, a failed listing, and MCP calls in a turn that goes back to the client.

The MCP server is a fake (`tests.unit.mcp_host`).
"""

from __future__ import annotations

import asyncio
import json

import pytest

from app.engine.tools import mcp_client
from app.statuses import ResponseStatus, StepKind, StepStatus
from tests.support.event_types import MCP_EVENTS
from tests.support.memory_store import at_write
from tests.unit.harness import Harness
from tests.unit.mcp_host import SERVER_URL, FakeMcp
from tests.unit.streams import WAIT_S, assert_well_formed, done_items
from tests.unit.tool_host import ToolHost
from tests.unit.upstream import (
    ScriptedUpstream,
    ToolCall,
    calls_reply,
    last_message,
    text_reply,
)

MCP_TOOL = {
    "type": "mcp",
    "server_label": "calc",
    "server_url": SERVER_URL,
    "require_approval": "never",
    "allowed_tools": ["add", "fail"],
}
BACKGROUND_ADD = {"model": "m", "input": "Add", "tools": [MCP_TOOL], "background": True}
CLIENT_TOOL = {"type": "function", "name": "client_fn"}
ADD = ToolCall("add", {"a": 1, "b": 2}, "call_add")


@pytest.fixture
def mcp(monkeypatch: pytest.MonkeyPatch) -> FakeMcp:
    return FakeMcp().install(monkeypatch)


async def test_an_mcp_call_is_completed_in_place(
    harness: Harness, upstream: ScriptedUpstream, mcp: FakeMcp
) -> None:
    upstream.then(calls_reply(ADD), text_reply("1 + 2 = 3."))

    run = await harness.run({"model": "m", "input": "Add", "tools": [MCP_TOOL]})

    assert run.final.status == ResponseStatus.COMPLETED
    listing, call, message = run.output
    assert listing["type"] == "mcp_list_tools"
    assert listing["server_label"] == "calc"
    assert [t["name"] for t in listing["tools"]] == ["add", "fail"]  # allowed_tools only
    assert listing["error"] is None
    assert (call["type"], call["name"], call["status"]) == ("mcp_call", "add", "completed")
    assert (call["output"], call["error"]) == ("3", None)
    assert json.loads(call["arguments"]) == {"a": 1, "b": 2}
    assert message["content"][0]["text"] == "1 + 2 = 3."
    assert mcp.calls == [("add", {"a": 1, "b": 2})]

    # The listed tools are offered to the model as functions.
    offered = [t["function"]["name"] for t in upstream.requests[0]["tools"]]
    assert "add" in offered and "hidden" not in offered
    # The model sees its call and the result, under the item's id.
    second = upstream.requests[1]["messages"]
    assert second[-2]["tool_calls"][0]["id"] == call["id"]
    assert last_message(upstream.requests[1]) == {
        "role": "tool",
        "tool_call_id": call["id"],
        "content": "3",
    }

    for expected in MCP_EVENTS:
        assert expected in run.types
    # The call's item is added by the turn and done by its tool step, at one index.
    assert [e["output_index"] for e in run.of_type("response.output_item.done")] == [0, 1, 2]
    assert done_items(run.events) == run.output
    # (Not checked against the Open Responses schema: it knows no `mcp` tools.)
    assert_well_formed(run.events)
    listed, _, called, _ = run.steps
    assert [s.kind for s in run.steps] == [
        StepKind.TOOL_CALL,
        StepKind.MODEL_CALL,
        StepKind.TOOL_CALL,
        StepKind.MODEL_CALL,
    ]
    assert listed.request == {"mcp_list_tools": "calc", "server_url": SERVER_URL}
    assert called.request is not None
    assert (called.request["type"], called.request["call_id"]) == ("mcp_call", call["id"])


async def test_an_mcp_tool_error_is_seen_by_the_model(
    harness: Harness, upstream: ScriptedUpstream, mcp: FakeMcp
) -> None:
    upstream.then(
        calls_reply(ToolCall("fail", {"reason": "out of paper"}, "call_fail")),
        text_reply("It failed."),
    )

    run = await harness.run({"model": "m", "input": "Fail", "tools": [MCP_TOOL]})

    assert run.final.status == ResponseStatus.COMPLETED
    call = run.output[1]
    assert call["status"] == "failed"
    assert call["error"] == {
        "type": "mcp_tool_execution_error",
        "content": [{"type": "text", "text": "refused: out of paper"}],
    }
    assert "response.mcp_call.failed" in run.types
    assert "refused: out of paper" in last_message(upstream.requests[1])["content"]


async def test_a_failed_listing_fails_the_response(
    harness: Harness, upstream: ScriptedUpstream, mcp: FakeMcp
) -> None:
    mcp.listing_error = "connection refused"

    run = await harness.run({"model": "m", "input": "Add", "tools": [MCP_TOOL]})

    assert run.final.status == ResponseStatus.FAILED
    assert run.final.error == {
        "code": "mcp_error",
        "message": "could not list the tools of MCP server 'calc': connection refused",
    }
    [listing] = run.output
    assert listing["error"] == "connection refused"
    assert upstream.requests == []
    assert "response.mcp_list_tools.failed" in run.types
    assert_well_formed(run.events)


async def test_mcp_calls_in_a_turn_with_a_client_call_are_closed_unrun(
    harness: Harness, upstream: ScriptedUpstream, mcp: FakeMcp
) -> None:
    upstream.then(calls_reply(ADD, ToolCall("client_fn", {}, "call_client")))

    run = await harness.run({"model": "m", "input": "Both", "tools": [MCP_TOOL, CLIENT_TOOL]})

    assert run.final.status == ResponseStatus.COMPLETED
    _, mcp_item, client_call = run.output
    assert mcp_item["status"] == "incomplete"
    assert mcp_item["error"] == {
        "type": "mcp_protocol_error",
        "code": -32603,
        "message": "not run: the model also called client tools in this turn",
    }
    assert client_call["name"] == "client_fn"
    assert mcp.calls == []
    assert_well_formed(run.events)


async def test_a_resumed_run_neither_lists_again_nor_repeats_a_finished_call(
    harness: Harness, upstream: ScriptedUpstream, tools: ToolHost, mcp: FakeMcp
) -> None:
    # The second turn is asked twice: its request goes out with its step's row, and the
    # crash comes as that row is written.
    upstream.then(calls_reply(ADD), text_reply("3."), text_reply("3."))

    # Dies as the second model turn starts: the listing and the call are recorded.
    run, _ = await harness.crash_and_resume(BACKGROUND_ADD, at_write("start_step", 3))

    assert run.final.status == ResponseStatus.COMPLETED
    assert mcp.listings == 1
    assert len(mcp.calls) == 1
    assert [i["type"] for i in run.output] == ["mcp_list_tools", "mcp_call", "message"]
    assert run.output[1]["output"] == "3"
    assert [s.status for s in run.steps] == [StepStatus.COMPLETED] * 4


async def test_a_cut_off_mcp_call_is_redone_and_completed_in_place(
    harness: Harness, upstream: ScriptedUpstream, mcp: FakeMcp
) -> None:
    upstream.then(calls_reply(ADD), text_reply("3."))

    # Dies while the call's result is being recorded: the call is cut off.
    run, _ = await harness.crash_and_resume(BACKGROUND_ADD, at_write("finish_step", 2))

    assert run.final.status == ResponseStatus.COMPLETED
    assert len(mcp.calls) == 2  # MCP has no idempotency key: the call is simply made again
    _, call, _ = run.output
    assert (call["status"], call["output"]) == ("completed", "3")
    # The redone call completes the item the first attempt announced.
    assert run.of_type("response.mcp_call.in_progress")[0]["item_id"] == call["id"]
    assert run.of_type("response.output_item.done")[0]["item"]["id"] == call["id"]


@pytest.mark.parametrize("ending", ["timeout", "inline-cancel"])
async def test_an_mcp_call_cut_off_by_the_end_of_the_response_is_not_left_in_progress(
    harness: Harness,
    upstream: ScriptedUpstream,
    mcp: FakeMcp,
    monkeypatch: pytest.MonkeyPatch,
    ending: str,
) -> None:
    entered = asyncio.Event()

    async def never_answers(*args: object, **kwargs: object) -> tuple[str | None, str | None]:
        entered.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    monkeypatch.setattr(mcp_client, "call_mcp_tool", never_answers)
    upstream.then(calls_reply(ADD))
    body = {"model": "m", "input": "Add", "tools": [MCP_TOOL]}
    if ending == "timeout":
        harness.configure(response_timeout_s=0.05)
        final = (await harness.run(body)).final
    else:
        stored = harness.seed(body)
        async with harness.started(stored) as (task, _):
            async with asyncio.timeout(WAIT_S):
                await entered.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        final = harness.store.response(stored.id)

    assert final.is_terminal
    assert [i["status"] for i in final.output or [] if i["type"] == "mcp_call"] == ["incomplete"]
