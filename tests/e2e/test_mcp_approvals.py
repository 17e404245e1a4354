"""MCP approvals through the official SDK, against real processes, Postgres and a real MCP
server: `require_approval` decides which calls wait; a waiting call ends the response with an
`mcp_approval_request`; the response that continues it runs an approved call exactly once (a
worker restarted before the answer, or killed after the call, changes nothing) or tells the
model of a denial; an answer naming no request of the conversation is a 400.

The demo upstream calls tools when asked with [[call:...]] and answers tool results with
"Tool results: name=result"; calls are told apart on the MCP server by their arguments.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response
from openai.types.responses.response_output_item import McpApprovalRequest, McpCall

from tests.support.clients import sdk_client
from tests.support.database import migrated_scratch_database
from tests.support.mcp_server import McpTestServer
from tests.support.processes import Command, command_env, running_worker
from tests.support.servers import running_api
from tests.support.settings import as_environment
from tests.support.sse import iter_frames
from tests.support.waiting import wait_for

RECOVERY_TIMEOUT_S = 60.0


def calc(server: McpTestServer, **fields: Any) -> Any:
    """The test MCP server as a request's tool; `require_approval` left out unless given."""
    return {"type": "mcp", "server_label": "calc", "server_url": server.url, **fields}


def numbers() -> tuple[int, int]:
    """Arguments no other test sends, so the server's record of calls tells ours apart."""
    return secrets.randbelow(10**6), 10**6 + secrets.randbelow(10**6)


def add_prompt(a: int, b: int, *extra: str) -> str:
    return " ".join([f'Add them [[call:add {{"a": {a}, "b": {b}}}]]', *extra])


def answer(request_id: str, approve: bool, **fields: Any) -> Any:
    return {
        "type": "mcp_approval_response",
        "approval_request_id": request_id,
        "approve": approve,
        **fields,
    }


def finished(client: openai.OpenAI, response_id: str) -> Response:
    def ended() -> Response | None:
        response = client.responses.retrieve(response_id)
        return response if response.status not in ("queued", "in_progress") else None

    return wait_for(ended, timeout_s=RECOVERY_TIMEOUT_S, what=f"{response_id} to end")


def approval_requests(response: Response) -> list[McpApprovalRequest]:
    return [item for item in response.output if isinstance(item, McpApprovalRequest)]


def mcp_calls(response: Response) -> list[McpCall]:
    return [item for item in response.output if isinstance(item, McpCall)]


# --- with the suite's API and worker ---------------------------------------------------------


def test_a_call_that_needs_approval_ends_the_response_and_an_approval_runs_it_once(
    client: openai.OpenAI, mcp_server: McpTestServer
) -> None:
    a, b = numbers()
    first = client.responses.create(model="demo", input=add_prompt(a, b), tools=[calc(mcp_server)])

    assert first.status == "completed"
    assert [item.type for item in first.output] == ["mcp_list_tools", "mcp_approval_request"]
    [request] = approval_requests(first)
    assert (request.server_label, request.name) == ("calc", "add")
    assert json.loads(request.arguments) == {"a": a, "b": b}
    assert mcp_server.calls_matching("add", {"a": a, "b": b}) == []

    second = client.responses.create(
        model="demo",
        previous_response_id=first.id,
        input=[answer(request.id, True)],
        tools=[calc(mcp_server)],
    )

    assert second.status == "completed"
    assert [item.type for item in second.output] == ["mcp_list_tools", "mcp_call", "message"]
    [call] = mcp_calls(second)
    assert call.approval_request_id == request.id
    assert (call.name, call.arguments, call.output) == ("add", request.arguments, str(a + b))
    assert call.error is None
    assert second.output_text == f"Tool results: add={a + b}"
    assert len(mcp_server.calls_matching("add", {"a": a, "b": b})) == 1
    # The answer is kept as the response's input, with an id of its own.
    [kept] = client.responses.input_items.list(second.id).data
    assert kept.type == "mcp_approval_response"
    assert (kept.approval_request_id, kept.approve) == (request.id, True)


def test_an_approval_on_a_conversation_runs_the_call_once(
    client: openai.OpenAI, mcp_server: McpTestServer
) -> None:
    a, b = numbers()
    conversation = client.conversations.create()
    first = client.responses.create(
        model="demo", input=add_prompt(a, b), tools=[calc(mcp_server)], conversation=conversation.id
    )
    [request] = approval_requests(first)

    second = client.responses.create(
        model="demo",
        input=[answer(request.id, True)],
        tools=[calc(mcp_server)],
        conversation=conversation.id,
    )

    assert second.status == "completed"
    [call] = mcp_calls(second)
    assert (call.approval_request_id, call.output) == (request.id, str(a + b))
    assert len(mcp_server.calls_matching("add", {"a": a, "b": b})) == 1
    # The conversation holds the request, its answer and the call, in order.
    kinds = [item.type for item in client.conversations.items.list(conversation.id, order="asc")]
    assert kinds.index("mcp_approval_request") < kinds.index("mcp_approval_response")
    assert kinds.index("mcp_approval_response") < kinds.index("mcp_call")
    # Answered once: the same answer again on the conversation is refused.
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(
            model="demo",
            input=[answer(request.id, True)],
            tools=[calc(mcp_server)],
            conversation=conversation.id,
        )
    assert refused.value.body["param"] == "input[0].approval_request_id"  # type: ignore[index]


def test_a_denied_call_does_not_run_and_the_model_is_told(
    client: openai.OpenAI, mcp_server: McpTestServer
) -> None:
    a, b = numbers()
    first = client.responses.create(model="demo", input=add_prompt(a, b), tools=[calc(mcp_server)])
    [request] = approval_requests(first)

    second = client.responses.create(
        model="demo",
        previous_response_id=first.id,
        input=[answer(request.id, False, reason="not on a Sunday")],
        tools=[calc(mcp_server)],
    )

    assert second.status == "completed"
    assert [item.type for item in second.output] == ["mcp_list_tools", "message"]
    assert mcp_server.calls_matching("add", {"a": a, "b": b}) == []
    told = second.output_text.removeprefix("Tool results: add=")
    assert "not approved" in json.loads(told)["error"]
    assert "not on a Sunday" in json.loads(told)["error"]


@pytest.mark.parametrize(
    ("require_approval", "waiting"),
    [
        ("always", {"add", "echo"}),
        ("never", set()),
        ({"never": {"tool_names": ["echo"]}}, {"add"}),
        ({"always": {"tool_names": ["echo"]}, "never": {"tool_names": ["add"]}}, {"echo"}),
        # Both are annotated read-only by the server; tools no filter selects wait.
        ({"never": {"read_only": True}}, set()),
        ({"never": {"read_only": False}}, {"add", "echo"}),
    ],
)
def test_require_approval_decides_which_calls_wait(
    client: openai.OpenAI, mcp_server: McpTestServer, require_approval: Any, waiting: set[str]
) -> None:
    a, b = numbers()
    text = f"echo {a}"
    prompt = add_prompt(a, b, f'[[call:echo {{"text": "{text}"}}]]')
    tool = calc(mcp_server, require_approval=require_approval, allowed_tools=["add", "echo"])

    response = client.responses.create(model="demo", input=prompt, tools=[tool])

    assert response.status == "completed"
    assert {item.name for item in approval_requests(response)} == waiting
    assert {call.name for call in mcp_calls(response)} == {"add", "echo"} - waiting
    seen = {
        "add": len(mcp_server.calls_matching("add", {"a": a, "b": b})),
        "echo": len(mcp_server.calls_matching("echo", {"text": text})),
    }
    assert seen == {name: 0 if name in waiting else 1 for name in seen}
    # Calls that need no approval ran, and the model answered them, unless some wait.
    assert bool(response.output_text) is not bool(waiting)


def test_a_streamed_approval_request_is_shown_whole(
    client: openai.OpenAI, mcp_server: McpTestServer
) -> None:
    a, b = numbers()
    with client.responses.stream(
        model="demo", input=add_prompt(a, b), tools=[calc(mcp_server)]
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()

    [request] = approval_requests(final)
    about_it = [
        e.type
        for e in events
        if getattr(e, "item_id", None) == request.id
        or getattr(getattr(e, "item", None), "id", None) == request.id
    ]
    assert about_it == ["response.output_item.added", "response.output_item.done"]
    assert client.responses.retrieve(final.id).output == final.output


@pytest.mark.parametrize("case", ["unknown id", "answered before", "server not in tools"])
def test_a_bad_approval_answer_is_a_400_naming_it(
    client: openai.OpenAI, mcp_server: McpTestServer, case: str
) -> None:
    a, b = numbers()
    first = client.responses.create(model="demo", input=add_prompt(a, b), tools=[calc(mcp_server)])
    [request] = approval_requests(first)
    previous, request_id, tools = first.id, request.id, [calc(mcp_server)]
    if case == "unknown id":
        request_id = "mcpr_unknown"
    elif case == "answered before":
        previous = client.responses.create(
            model="demo",
            previous_response_id=first.id,
            input=[answer(request.id, False)],
            tools=tools,
        ).id
    else:
        tools = []

    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(
            model="demo",
            previous_response_id=previous,
            input=[{"role": "user", "content": "Go"}, answer(request_id, True)],
            tools=tools,
        )

    error = refused.value.body
    assert isinstance(error, dict)
    assert (error["type"], error["param"]) == (
        "invalid_request_error",
        "input[1].approval_request_id",
    )
    assert error["message"]
    assert mcp_server.calls_matching("add", {"a": a, "b": b}) == []


# --- with workers of its own, to stop -------------------------------------------------------


@dataclass
class Cluster:
    """An API on a database of its own, and the environment to start its workers with."""

    api_url: str
    env: dict[str, str]

    def start_worker(self, stack: contextlib.ExitStack) -> Command:
        return stack.enter_context(running_worker(self.env, concurrency=2))


@pytest.fixture(scope="module")
def cluster(
    postgres_admin_url: str, suite_settings: dict[str, Any], make_settings: Callable[..., Any]
) -> Iterator[Cluster]:
    with migrated_scratch_database(postgres_admin_url) as database_url:
        # Tuned to notice a dead worker within about two seconds.
        tuning = {
            "worker_heartbeat_s": 0.5,
            "stall_threshold_s": 2,
            "recovery_interval_s": 1,
            "event_flush_interval_s": 0.02,
            "worker_shutdown_timeout_s": 0.5,
        }
        values = {**suite_settings, **tuning, "database_url": database_url}
        with running_api(make_settings(**values)) as api_url:
            yield Cluster(api_url, command_env(**as_environment(values)))


def kill(process: Command) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.popen.wait(timeout=10)


def test_an_approval_round_trip_across_a_worker_restart(
    cluster: Cluster, mcp_server: McpTestServer
) -> None:
    a, b = numbers()
    tools: Any = [calc(mcp_server)]
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(sdk_client(cluster.api_url, timeout=RECOVERY_TIMEOUT_S))
        first_worker = cluster.start_worker(stack)
        queued = client.responses.create(
            model="demo", input=add_prompt(a, b), tools=tools, background=True
        )
        first = finished(client, queued.id)
        [request] = approval_requests(first)
        kill(first_worker)  # the request waits in Postgres, not in any process
        cluster.start_worker(stack)

        answered = client.responses.create(
            model="demo",
            previous_response_id=first.id,
            input=[answer(request.id, True)],
            tools=tools,
            background=True,
        )
        second = finished(client, answered.id)

    assert first.status == "completed"
    assert second.status == "completed"
    [call] = mcp_calls(second)
    assert (call.approval_request_id, call.output) == (request.id, str(a + b))
    assert second.output_text == f"Tool results: add={a + b}"
    assert len(mcp_server.calls_matching("add", {"a": a, "b": b})) == 1


def test_a_worker_killed_after_the_approved_call_ran_does_not_run_it_again(
    cluster: Cluster, mcp_server: McpTestServer
) -> None:
    a, b = numbers()
    tools: Any = [calc(mcp_server)]
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(sdk_client(cluster.api_url, timeout=RECOVERY_TIMEOUT_S))
        worker = cluster.start_worker(stack)
        # Every model turn streams slowly, so the kill lands inside the turn after the call.
        prompt = add_prompt(a, b, "[[delay:300]]")
        queued = client.responses.create(model="demo", input=prompt, tools=tools, background=True)
        [request] = approval_requests(finished(client, queued.id))

        body = {
            "model": "demo",
            "previous_response_id": queued.id,
            "input": [answer(request.id, True)],
            "tools": tools,
            "background": True,
            "stream": True,
        }
        response = stack.enter_context(
            httpx.stream(
                "POST", f"{cluster.api_url}/v1/responses", json=body, timeout=RECOVERY_TIMEOUT_S
            )
        )
        assert response.status_code == 200
        frames = iter_frames(response)
        events = []
        for _, event in frames:
            events.append(event)
            if event["type"] == "response.output_text.delta":
                break  # the call is done and recorded; the model is answering it
        kill(worker)
        cluster.start_worker(stack)
        events.extend(event for _, event in frames)

    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[-1]["type"] == "response.completed"
    final = events[-1]["response"]
    assert [item["type"] for item in final["output"]] == ["mcp_list_tools", "mcp_call", "message"]
    call = final["output"][1]
    assert (call["approval_request_id"], call["output"]) == (request.id, str(a + b))
    assert len(mcp_server.calls_matching("add", {"a": a, "b": b})) == 1
    # The call's item was announced and completed once; only the message the kill cut off
    # (closed `incomplete` in the stream) was redone.
    completed = [e for e in events if e["type"] == "response.mcp_call.completed"]
    assert [e["item_id"] for e in completed] == [call["id"]]
    cut = [
        e["item"]
        for e in events
        if e["type"] == "response.output_item.done" and e["item"].get("status") == "incomplete"
    ]
    assert [item["type"] for item in cut] == ["message"]
    assert final["output"][2]["content"][0]["text"] == f"Tool results: add={a + b}"
