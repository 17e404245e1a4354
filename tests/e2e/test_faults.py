"""Fault injection on real processes: workers killed with SIGKILL in the middle of a model
turn or of a tool call, an API process killed mid-stream, a worker stopped with SIGTERM.

Each scenario runs on a database of its own with its own worker processes, tuned to notice
a dead worker within about two seconds. The promise checked: every response still ends, with
the output an undisturbed run gives; no sequence number repeats or goes missing; a tool
saw each Idempotency-Key at most twice and applied its effect once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.config import Settings
from tests.fakes.upstream.replies import token_logprobs
from tests.support.clients import sdk_client
from tests.support.database import migrated_scratch_database
from tests.support.processes import Command, command_env, running_api_process, running_worker
from tests.support.schema import assert_valid_events
from tests.support.servers import running_api, serve
from tests.support.sockets import create, raw_socket
from tests.support.sse import frames_from_lines, iter_frames
from tests.support.waiting import wait_for

RECOVERY_TIMEOUT_S = 60.0
# Where a model turn is cut, counted in the text deltas seen of its 18 ("Hello! You said:",
# the marker, 14 words; 60 ms apart). After the 1st, the cut item holds only its opening
# delta; after the 5th, it is cut mid-text; after the 10th, it is cut as late as stays well
# ahead (8 deltas, about 0.5 s) of the item's end: later, the worker may finish the item
# before the kill lands, leaving nothing to cut. The points in between cut the same item at
# other lengths, which exercises nothing these three do not.
KILL_AFTER_DELTAS = (1, 5, 10)

Event = dict[str, Any]
Frames = Iterator[tuple[str | None, Event]]


@dataclass
class GatedTool:
    """A payment-like tool: the effect happens on arrival, the answer waits for the gate.

    It deduplicates by Idempotency-Key, as a tool built for retries does: a repeated key gets
    the first answer back without a second effect.
    """

    seen: dict[str, int] = field(default_factory=dict)
    effects: dict[str, int] = field(default_factory=dict)
    arrived: threading.Event = field(default_factory=threading.Event)
    gate: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        self.arrived.clear()
        self.gate.clear()

    def app(self) -> Starlette:
        async def pay(request: Request) -> JSONResponse:
            key = request.headers["idempotency-key"]
            arguments = json.loads(await request.body())
            with self.lock:
                self.seen[key] = self.seen.get(key, 0) + 1
                first = key not in self.effects
                if first:
                    self.effects[key] = 1
            self.arrived.set()
            # Held until the test has killed the worker waiting for this answer.
            await asyncio.to_thread(self.gate.wait, RECOVERY_TIMEOUT_S)
            return JSONResponse({"paid": arguments.get("n"), "first_time": first})

        return Starlette(routes=[Route("/pay", pay, methods=["POST"])])


@dataclass
class Faults:
    database_url: str
    api_url: str
    env: dict[str, str]
    tool: GatedTool
    workers: list[Command] = field(default_factory=list)

    def start_worker(self, stack: contextlib.ExitStack, **env: str) -> Command:
        return stack.enter_context(running_worker({**self.env, **env}, concurrency=2))


@pytest.fixture(scope="module")
def faults(
    postgres_admin_url: str,
    upstream_url: str,
    make_settings: Callable[..., Settings],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Faults]:
    tool = GatedTool()
    with (
        migrated_scratch_database(postgres_admin_url) as database_url,
        serve(tool.app(), ready_path="/pay", lifespan="off", ready_status=405) as tool_url,
    ):
        tools_file = tmp_path_factory.mktemp("fault-tools") / "tools.toml"
        tools_file.write_text(
            f'[[tools]]\nname = "pay"\nurl = "{tool_url}/pay"\ntimeout_s = 60\n\n'
            f'[[tools]]\nname = "pay_unsafe"\nurl = "{tool_url}/pay"\ntimeout_s = 60\n'
            "retry_safe = false\n"
        )
        tuning = {
            "WORKER_HEARTBEAT_S": "0.5",
            "STALL_THRESHOLD_S": "2",
            "RECOVERY_INTERVAL_S": "1",
            "INLINE_LEASE_S": "1.5",
            "EVENT_FLUSH_INTERVAL_S": "0.02",
            "WORKER_SHUTDOWN_TIMEOUT_S": "0.5",
            "SSE_KEEPALIVE_S": "0.5",
        }
        env = command_env(
            DATABASE_URL=database_url,
            UPSTREAM_BASE_URL=upstream_url,
            TOOLS_FILE=str(tools_file),
            **tuning,
        )
        settings = make_settings(database_url=database_url, tools_file=str(tools_file))
        with running_api(settings) as api_url:
            yield Faults(database_url, api_url, env, tool)


def kill(process: Command) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.popen.wait(timeout=10)


def stop_with_sigterm(worker: Command) -> None:
    """Ask the worker to shut down, and see it exit cleanly."""
    worker.popen.send_signal(signal.SIGTERM)
    assert worker.wait_exit(20) == 0, worker.describe()


def stream_background(
    stack: contextlib.ExitStack, api_url: str, text: str, **fields: Any
) -> Frames:
    """POST a background stream (with the other body `fields`); its frames, read as they
    come (closed with the stack)."""
    body = {"model": "demo", "input": text, "background": True, "stream": True, **fields}
    response = stack.enter_context(
        httpx.stream("POST", f"{api_url}/v1/responses", json=body, timeout=RECOVERY_TIMEOUT_S)
    )
    assert response.status_code == 200
    return iter_frames(response)


def up_to_delta(
    count: int, kind: str = "response.output_text.delta"
) -> Callable[[Frames], list[Event]]:
    """Read the events up to the `count`-th delta of `kind` (text, unless said otherwise)."""

    def read(frames: Frames) -> list[Event]:
        events = []
        for _, event in frames:
            events.append(event)
            if sum(e["type"] == kind for e in events) == count:
                break
        return events

    return read


def waiting_for_the_tool_call(tool: GatedTool) -> Callable[[Frames], list[Event]]:
    """Read no events: wait until the tool call has arrived (its answer waits for the gate)."""

    def wait(frames: Frames) -> list[Event]:
        wait_for(tool.arrived.is_set, timeout_s=RECOVERY_TIMEOUT_S, what="the tool call")
        return []

    return wait


def kill_then_answer(tool: GatedTool) -> Callable[[Command], None]:
    """Kill the worker waiting for the tool's answer, then open the gate: the dead worker
    never hears the answer, and the next one's call is answered at once."""

    def stop(worker: Command) -> None:
        kill(worker)
        tool.gate.set()

    return stop


def stream_across_a_worker_stop(
    faults: Faults,
    text: str,
    *,
    read_first: Callable[[Frames], list[Event]],
    stop: Callable[[Command], None],
    **fields: Any,
) -> list[Event]:
    """A background stream of `text` whose worker is stopped midway: read its first events
    with `read_first`, stop that worker with `stop`, start another, and read to the end.
    Every event the stream carried, in order."""
    with contextlib.ExitStack() as stack:
        worker = faults.start_worker(stack)
        frames = stream_background(stack, faults.api_url, text, **fields)
        events = read_first(frames)
        stop(worker)
        faults.start_worker(stack)
        events.extend(event for _, event in frames)
    return events


def stream_with_a_tool_call_cut_off(faults: Faults, text: str) -> list[Event]:
    """`stream_across_a_worker_stop` where the worker is killed while the call to the gated
    tool that `text` asks for waits for its answer."""
    faults.tool.reset()
    return stream_across_a_worker_stop(
        faults,
        text,
        read_first=waiting_for_the_tool_call(faults.tool),
        stop=kill_then_answer(faults.tool),
    )


def sdk_stream_across_a_worker_kill(
    faults: Faults, text: str, *, read_first: Callable[[Iterator[Any]], None]
) -> Any:
    """The SDK's own stream helper (`client.responses.stream`) following a background
    response whose worker is killed midway: `read_first` reads up to the moment of the kill,
    another worker takes over, and the helper reads on to the end. What the helper assembles
    as the final response."""
    faults.tool.reset()
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(sdk_client(faults.api_url, timeout=RECOVERY_TIMEOUT_S))
        worker = faults.start_worker(stack)
        stream = stack.enter_context(
            client.responses.stream(model="demo", input=text, background=True)
        )
        events = iter(stream)
        read_first(events)
        kill_then_answer(faults.tool)(worker)
        faults.start_worker(stack)
        for _ in events:
            pass
        return stream.get_final_response()


def assert_gapless(events: list[dict[str, Any]]) -> None:
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


def assert_cut_items_closed_before_new_ones(events: list[dict[str, Any]]) -> None:
    """Once an item is abandoned (done as incomplete), no item was left open before it."""
    open_items: set[str] = set()
    for event in events:
        if event["type"] == "response.output_item.added":
            assert not open_items or event["item"]["type"] == "mcp_call", (
                f"item {event['item']['id']} added while {open_items} still open"
            )
            open_items.add(event["item"]["id"])
        elif event["type"] == "response.output_item.done":
            open_items.discard(event["item"]["id"])
    assert not open_items


@pytest.mark.parametrize("kill_after", KILL_AFTER_DELTAS)
def test_worker_killed_during_a_model_turn(faults: Faults, kill_after: int) -> None:
    marker = f"turn-{kill_after}-{secrets.token_hex(3)}"
    words = " ".join(f"w{i}" for i in range(14))
    events = stream_across_a_worker_stop(
        faults, f"{marker} {words} [[delay:60]]", read_first=up_to_delta(kill_after), stop=kill
    )

    assert_gapless(events)
    assert events[-1]["type"] == "response.completed"
    final = events[-1]["response"]
    [message] = final["output"]
    assert message["content"][0]["text"] == f"Hello! You said: {marker} {words}"
    assert_cut_items_closed_before_new_ones(events)
    cut = [
        e
        for e in events
        if e["type"] == "response.output_item.done" and e["item"]["status"] == "incomplete"
    ]
    assert len(cut) == 1  # the message cut off by the kill


def test_a_message_cut_off_by_a_killed_worker_keeps_the_logprobs_it_streamed(
    faults: Faults,
) -> None:
    marker = f"logprobs-{secrets.token_hex(3)}"
    words = " ".join(f"w{i}" for i in range(14))
    events = stream_across_a_worker_stop(
        faults,
        f"{marker} {words} [[delay:60]]",
        read_first=up_to_delta(5),
        stop=kill,
        include=["message.output_text.logprobs"],
        top_logprobs=1,
    )

    assert_gapless(events)
    [cut] = [
        e["item"]
        for e in events
        if e["type"] == "response.output_item.done" and e["item"]["status"] == "incomplete"
    ]
    cut_deltas = [
        e for e in events if e["type"] == "response.output_text.delta" and e["item_id"] == cut["id"]
    ]
    [part] = cut["content"]
    assert "".join(entry["token"] for entry in part["logprobs"]) == part["text"]
    assert [token_logprobs(entry["token"], 1) for entry in part["logprobs"]] == part["logprobs"]
    assert len(part["logprobs"]) == sum(len(d["logprobs"]) for d in cut_deltas) >= 5
    [message] = events[-1]["response"]["output"]
    [final] = message["content"]
    assert "".join(entry["token"] for entry in final["logprobs"]) == final["text"]


def test_worker_killed_during_the_reasoning_of_a_turn(faults: Faults) -> None:
    marker = f"think-{secrets.token_hex(3)}"
    words = " ".join(f"w{i}" for i in range(14))
    events = stream_across_a_worker_stop(
        faults,
        f"{marker} {words} [[think]] [[delay:60]]",
        read_first=up_to_delta(3, "response.reasoning_text.delta"),
        stop=kill,
    )

    assert_gapless(events)
    assert_valid_events(events)
    assert events[-1]["type"] == "response.completed"
    reasoning, message = events[-1]["response"]["output"]
    thought = f"Thinking about: {marker} {words}"
    assert reasoning["content"] == [{"type": "reasoning_text", "text": thought}]
    assert message["content"][0]["text"] == f"Hello! You said: {marker} {words}"
    assert_cut_items_closed_before_new_ones(events)
    [cut] = [
        n
        for n, e in enumerate(events)
        if e["type"] == "response.output_item.done" and e["item"]["status"] == "incomplete"
    ]
    # The reasoning cut off by the kill: its part closed, then the item, with what it had.
    cut_item = events[cut]["item"]
    assert cut_item["type"] == "reasoning"
    [part] = cut_item["content"]
    assert thought.startswith(part["text"]) and part["text"] != thought
    assert [e["type"] for e in events[cut - 2 : cut]] == [
        "response.reasoning_text.done",
        "response.content_part.done",
    ]
    assert events[cut - 1]["part"] == part


def test_worker_killed_during_a_tool_call(faults: Faults) -> None:
    marker = f"tool-{secrets.token_hex(3)}"
    events = stream_with_a_tool_call_cut_off(faults, f'{marker} [[call:pay {{"n": 7}}]]')

    assert_gapless(events)
    assert events[-1]["type"] == "response.completed"
    final = events[-1]["response"]
    assert [item["type"] for item in final["output"]] == [
        "function_call",
        "function_call_output",
        "message",
    ]
    call, output, message = final["output"]
    answer = json.loads(output["output"])
    assert answer["paid"] == 7
    assert message["content"][0]["text"] == f"Tool results: pay={output['output']}"
    key = call["call_id"]
    assert faults.tool.seen[key] == 2  # cut off once, redone once with the same key
    assert faults.tool.effects[key] == 1
    assert answer["first_time"] is False  # the redo got the deduplicated answer
    assert_cut_items_closed_before_new_ones(events)


def test_unsafe_tool_cut_off_ends_step_abandoned(faults: Faults) -> None:
    marker = f"unsafe-{secrets.token_hex(3)}"
    events = stream_with_a_tool_call_cut_off(faults, f'{marker} [[call:pay_unsafe {{"n": 1}}]]')

    assert events[-1]["type"] == "response.failed"
    final = events[-1]["response"]
    assert final["error"]["code"] == "step_abandoned"
    call = final["output"][0]
    assert faults.tool.seen[call["call_id"]] == 1  # not called again
    assert_gapless(events)


def test_api_killed_mid_stream_hands_the_response_to_a_worker(faults: Faults) -> None:
    marker = f"handoff-{secrets.token_hex(3)}"
    words = " ".join(f"w{i}" for i in range(12))
    with contextlib.ExitStack() as stack:
        faults.start_worker(stack)
        api, api_url = stack.enter_context(running_api_process(faults.env, "--no-migrate"))
        body = {"model": "demo", "input": f"{marker} {words} [[delay:80]]", "stream": True}
        with httpx.stream("POST", f"{api_url}/v1/responses", json=body, timeout=30) as response:
            for _, event in iter_frames(response):
                if event["type"] == "response.created":
                    response_id = event["response"]["id"]
                if event["type"] == "response.output_text.delta":
                    kill(api)
                    break

        def finished() -> dict[str, Any] | None:
            reply = httpx.get(f"{faults.api_url}/v1/responses/{response_id}").json()
            return reply if reply["status"] not in ("queued", "in_progress") else None

        final = wait_for(finished, timeout_s=RECOVERY_TIMEOUT_S, what="the hand-off")
    assert final["status"] == "completed"
    [message] = final["output"]
    assert message["content"][0]["text"] == f"Hello! You said: {marker} {words}"


def test_a_handed_off_response_not_stored_is_finished_then_forgotten(faults: Faults) -> None:
    marker = f"unstored-{secrets.token_hex(3)}"
    words = " ".join(f"w{i}" for i in range(12))
    body = {"model": "demo", "input": f"{marker} {words} [[delay:80]]", "stream": True}
    with contextlib.ExitStack() as stack:
        faults.start_worker(stack)
        api, api_url = stack.enter_context(running_api_process(faults.env, "--no-migrate"))
        with httpx.stream(
            "POST", f"{api_url}/v1/responses", json={**body, "store": False}, timeout=30
        ) as response:
            for _, event in iter_frames(response):
                if event["type"] == "response.created":
                    response_id = event["response"]["id"]
                if event["type"] == "response.output_text.delta":
                    kill(api)
                    break

        def ended() -> dict[str, Any] | None:
            with psycopg.connect(faults.database_url, autocommit=True) as db:
                row = db.execute(
                    "SELECT status, request, output, usage,"
                    " (SELECT count(*) FROM response_steps WHERE response_id = r.id) AS steps"
                    " FROM responses r WHERE id = %s",
                    (response_id,),
                ).fetchone()
            assert row is not None
            status, request, output, usage, steps = row
            if status in ("queued", "in_progress"):
                assert request["input"]  # kept while it runs: the worker resumes from it
                return None
            return {
                "status": status,
                "request": request,
                "output": output,
                "usage": usage,
                "steps": steps,
            }

        final = wait_for(ended, timeout_s=RECOVERY_TIMEOUT_S, what="the hand-off")
    assert final == {
        "status": "completed",
        "request": {"store": False},
        "output": None,
        "usage": final["usage"],
        "steps": 0,
    }
    assert final["usage"]["output_tokens"] > 0
    gone = httpx.get(f"{faults.api_url}/v1/responses/{response_id}", timeout=30)
    assert gone.status_code == 404


def finished_over_http(faults: Faults, response_id: str) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        reply = httpx.get(f"{faults.api_url}/v1/responses/{response_id}").json()
        return reply if reply["status"] not in ("queued", "in_progress") else None

    final: dict[str, Any] = wait_for(finished, timeout_s=RECOVERY_TIMEOUT_S, what="the hand-off")
    return final


def test_api_killed_mid_websocket_turn_hands_the_response_to_a_worker(faults: Faults) -> None:
    marker = f"ws-handoff-{secrets.token_hex(3)}"
    words = " ".join(f"w{i}" for i in range(12))
    with contextlib.ExitStack() as stack:
        faults.start_worker(stack)
        api, api_url = stack.enter_context(running_api_process(faults.env, "--no-migrate"))
        socket = stack.enter_context(raw_socket(api_url))
        socket.send(create(input=f"{marker} {words} [[delay:80]]"))
        while (event := json.loads(socket.recv_bytes()))["type"] != "response.output_text.delta":
            if event["type"] == "response.created":
                response_id = event["response"]["id"]
        kill(api)
        final = finished_over_http(faults, response_id)
    assert final["status"] == "completed"
    [message] = final["output"]
    assert message["content"][0]["text"] == f"Hello! You said: {marker} {words}"


def test_api_stopped_mid_turn_says_goodbye_and_a_worker_finishes(faults: Faults) -> None:
    """SIGTERM on the API: an inline stream and a WebSocket turn each end with an `error`
    event naming the shutdown (the SSE stream then `[DONE]`, the socket a 1012 close), and
    a worker finishes both responses through their lapsed leases."""
    marker = f"goodbye-{secrets.token_hex(3)}"
    words = " ".join(f"w{i}" for i in range(12))
    body = {"model": "demo", "input": f"{marker} sse {words} [[delay:100]]", "stream": True}
    with contextlib.ExitStack() as stack:
        faults.start_worker(stack)
        api, api_url = stack.enter_context(running_api_process(faults.env, "--no-migrate"))
        socket = stack.enter_context(raw_socket(api_url))
        socket.send(create(input=f"{marker} ws {words} [[delay:100]]"))
        turn = [json.loads(socket.recv_bytes())]
        stream = stack.enter_context(
            httpx.stream("POST", f"{api_url}/v1/responses", json=body, timeout=30)
        )
        lines = stream.iter_lines()
        sse = []
        for _, event in frames_from_lines(lines):
            sse.append(event)
            if event["type"] == "response.output_text.delta":
                break
        api.popen.send_signal(signal.SIGTERM)
        sse.extend(event for _, event in frames_from_lines(lines))  # checks the [DONE]
        turn.extend(socket.until_closed())
        close_code = socket.connection.close_code
        assert api.wait_exit(30) == 0, api.describe()
        finals = [finished_over_http(faults, events[0]["response"]["id"]) for events in (sse, turn)]

    for events in (sse, turn):
        goodbye = events[-1]
        assert goodbye["type"] == "error"
        assert goodbye["error"]["code"] == "server_shutdown"
        assert goodbye["sequence_number"] == events[-2]["sequence_number"] + 1
    assert close_code == 1012
    for final, kind in zip(finals, ("sse", "ws"), strict=True):
        assert final["status"] == "completed"
        assert (
            final["output"][-1]["content"][0]["text"] == f"Hello! You said: {marker} {kind} {words}"
        )


def test_worker_sigterm_hands_running_work_back(faults: Faults) -> None:
    marker = f"shutdown-{secrets.token_hex(3)}"
    words = " ".join(f"w{i}" for i in range(20))
    events = stream_across_a_worker_stop(
        faults,
        f"{marker} {words} [[delay:80]]",
        read_first=up_to_delta(1),
        stop=stop_with_sigterm,
    )

    assert_gapless(events)
    assert events[-1]["type"] == "response.completed"
    [message] = events[-1]["response"]["output"]
    assert message["content"][0]["text"] == f"Hello! You said: {marker} {words}"


def conversation_items(api_url: str, conversation_id: str) -> list[dict[str, Any]]:
    """Every item of the conversation, oldest first."""
    with sdk_client(api_url, timeout=RECOVERY_TIMEOUT_S) as client:
        pages = client.conversations.items.list(conversation_id, order="asc", limit=100)
        return [item.to_dict() for item in pages]


def new_conversation(api_url: str) -> str:
    with sdk_client(api_url, timeout=RECOVERY_TIMEOUT_S) as client:
        return client.conversations.create(items=[{"role": "user", "content": "before"}]).id


def test_a_response_on_a_conversation_killed_mid_turn_appends_once(
    faults: Faults, db_of_faults: psycopg.Connection[Any]
) -> None:
    conversation_id = new_conversation(faults.api_url)
    marker = f"conv-kill-{secrets.token_hex(3)}"
    words = " ".join(f"w{i}" for i in range(14))
    events = stream_across_a_worker_stop(
        faults,
        f"{marker} {words} [[delay:60]]",
        read_first=up_to_delta(5),
        stop=kill,
        conversation=conversation_id,
    )

    assert_gapless(events)
    assert events[-1]["type"] == "response.completed"
    final = events[-1]["response"]
    assert final["conversation"] == {"id": conversation_id}
    items = conversation_items(faults.api_url, conversation_id)
    [message] = final["output"]
    assert [item["id"] for item in items[1:]] == [
        final_input_id(faults, final["id"]),
        message["id"],
    ]
    assert items[2]["content"][0]["text"] == f"Hello! You said: {marker} {words}"
    cut = [
        e
        for e in events
        if e["type"] == "response.output_item.done" and e["item"]["status"] == "incomplete"
    ]
    assert len(cut) == 1  # the first attempt was killed mid-message
    # Once: two attempts ran, one ending appended, at the positions that follow.
    rows = db_of_faults.execute(
        "SELECT position, response_id FROM conversation_items WHERE conversation_id = %s"
        " ORDER BY position",
        (conversation_id,),
    ).fetchall()
    assert rows == [(0, None), (1, final["id"]), (2, final["id"])]


def test_an_inline_response_on_a_conversation_handed_to_a_worker_appends_once(
    faults: Faults,
) -> None:
    conversation_id = new_conversation(faults.api_url)
    marker = f"conv-handoff-{secrets.token_hex(3)}"
    words = " ".join(f"w{i}" for i in range(12))
    with contextlib.ExitStack() as stack:
        faults.start_worker(stack)
        api, api_url = stack.enter_context(running_api_process(faults.env, "--no-migrate"))
        body = {
            "model": "demo",
            "input": f"{marker} {words} [[delay:80]]",
            "stream": True,
            "conversation": conversation_id,
        }
        with httpx.stream("POST", f"{api_url}/v1/responses", json=body, timeout=30) as response:
            for _, event in iter_frames(response):
                if event["type"] == "response.created":
                    response_id = event["response"]["id"]
                if event["type"] == "response.output_text.delta":
                    kill(api)
                    break

        def finished() -> dict[str, Any] | None:
            reply = httpx.get(f"{faults.api_url}/v1/responses/{response_id}").json()
            return reply if reply["status"] not in ("queued", "in_progress") else None

        final = wait_for(finished, timeout_s=RECOVERY_TIMEOUT_S, what="the hand-off")
    assert final["status"] == "completed"
    items = conversation_items(faults.api_url, conversation_id)
    assert [item["id"] for item in items[1:]] == [
        final_input_id(faults, response_id),
        final["output"][0]["id"],
    ]


def final_input_id(faults: Faults, response_id: str) -> str:
    with sdk_client(faults.api_url, timeout=RECOVERY_TIMEOUT_S) as client:
        [item] = client.responses.input_items.list(response_id).data
    return item.id


@pytest.fixture
def db_of_faults(faults: Faults) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(faults.database_url, autocommit=True) as conn:
        yield conn


def test_api_and_workers_reconnect_after_their_connections_are_cut(faults: Faults) -> None:
    """What a Postgres restart does to clients: every connection dropped at once."""
    marker = f"reconnect-{secrets.token_hex(3)}"
    with contextlib.ExitStack() as stack:
        worker = faults.start_worker(stack)
        with psycopg.connect(faults.database_url, autocommit=True) as admin:
            dropped = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
        assert dropped is not None and dropped[0] > 0

        def completes() -> dict[str, Any] | None:
            body = {"model": "demo", "input": marker, "background": True}
            try:
                reply = httpx.post(f"{faults.api_url}/v1/responses", json=body, timeout=10)
            except httpx.HTTPError:
                return None
            if reply.status_code == 503:
                return None  # a request in the instant of reconnection may get one
            assert reply.status_code == 200, reply.text
            response_id = reply.json()["id"]
            return wait_for(
                lambda: (
                    (r := httpx.get(f"{faults.api_url}/v1/responses/{response_id}").json())[
                        "status"
                    ]
                    == "completed"
                    and r
                ),
                timeout_s=RECOVERY_TIMEOUT_S,
                what="the worker to run it",
            )

        try:
            final = wait_for(completes, timeout_s=RECOVERY_TIMEOUT_S, what="service")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{worker.describe()}") from None
        assert worker.popen.poll() is None, worker.describe()
    assert final["output"][0]["content"][0]["text"] == f"Hello! You said: {marker}"


def test_a_job_running_past_max_run_time_is_stopped_and_failed(faults: Faults) -> None:
    marker = f"overrun-{secrets.token_hex(3)}"
    words = " ".join(f"w{i}" for i in range(40))
    with contextlib.ExitStack() as stack:
        faults.start_worker(stack, MAX_RUN_TIME_S="1")
        frames = stream_background(stack, faults.api_url, f"{marker} {words} [[delay:200]]")
        events = [event for _, event in frames]

    assert_gapless(events)
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert events[-1]["response"]["error"]["code"] == "timeout"


def sdk_events_up_to(count: int, event_type: str) -> Callable[[Iterator[Any]], None]:
    """For the SDK stream helper: read its events until the `count`-th of `event_type`."""

    def read(events: Iterator[Any]) -> None:
        seen = 0
        for event in events:
            seen += event.type == event_type
            if seen == count:
                return

    return read


def test_the_sdk_stream_helper_follows_a_response_across_a_worker_killed_mid_turn(
    faults: Faults,
) -> None:
    marker = f"sdk-turn-{secrets.token_hex(3)}"
    words = " ".join(f"w{i}" for i in range(14))

    final = sdk_stream_across_a_worker_kill(
        faults,
        f"{marker} {words} [[delay:60]]",
        read_first=sdk_events_up_to(3, "response.output_text.delta"),
    )

    assert final.status == "completed"
    assert final.output_text == f"Hello! You said: {marker} {words}"


def test_the_sdk_stream_helper_follows_a_response_across_a_worker_killed_mid_reasoning(
    faults: Faults,
) -> None:
    marker = f"sdk-think-{secrets.token_hex(3)}"
    words = " ".join(f"w{i}" for i in range(14))

    final = sdk_stream_across_a_worker_kill(
        faults,
        f"{marker} {words} [[think]] [[delay:60]]",
        read_first=sdk_events_up_to(3, "response.reasoning_text.delta"),
    )

    assert final.status == "completed"
    reasoning, _ = final.output
    assert reasoning.type == "reasoning"
    assert reasoning.content is not None
    assert reasoning.content[0].text == f"Thinking about: {marker} {words}"
    assert final.output_text == f"Hello! You said: {marker} {words}"


def test_the_sdk_stream_helper_follows_a_response_across_a_worker_killed_mid_tool_call(
    faults: Faults,
) -> None:
    marker = f"sdk-tool-{secrets.token_hex(3)}"

    def until_the_tool_is_called(events: Iterator[Any]) -> None:
        wait_for(faults.tool.arrived.is_set, timeout_s=RECOVERY_TIMEOUT_S, what="the tool call")

    final = sdk_stream_across_a_worker_kill(
        faults, f'{marker} [[call:pay {{"n": 3}}]]', read_first=until_the_tool_is_called
    )

    assert final.status == "completed"
    assert [item.type for item in final.output] == [
        "function_call",
        "function_call_output",
        "message",
    ]
    assert json.loads(final.output[1].output)["paid"] == 3
