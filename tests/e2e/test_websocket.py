"""WebSocket mode on /v1/responses, through the openai SDK's `client.responses.connect()`
(and a raw client where the wire is the point): turns that stream the events a streaming
create streams, one at a time; `store: false` continued from the connection's memory with
nothing read back from Postgres; stored responses continued from Postgres; refusals as error
envelopes on an open socket; a failed continuation forgetting what it continued; tools,
MCP and reasoning; a client that leaves; keys, admission and the connection's time limit."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import openai
import psycopg
import pytest
from openai.lib.responses_websocket import ResponsesWebSocketLimits, ResponsesWebSocketSession
from openai.types.responses.responses_server_event import ResponseWsCompleted, ResponseWsError
from websockets.exceptions import InvalidStatus

from app.config import Settings
from tests.fakes.upstream.spy import requests_mentioning, stream_end
from tests.support.clients import sdk_client
from tests.support.event_types import MCP_EVENTS, message_events, reasoning_events
from tests.support.mcp_server import McpTestServer
from tests.support.schema import assert_valid_events, assert_valid_response
from tests.support.servers import running_api
from tests.support.sockets import create, raw_socket, read_turn
from tests.support.sse import stream_events
from tests.support.tool_server import ToolServer
from tests.support.waiting import wait_for

CLIENT_TOOL = {"type": "function", "name": "client_fn", "parameters": {"type": "object"}}


@pytest.fixture
def connection(client: openai.OpenAI) -> Iterator[Any]:
    with client.responses.connect() as connected:
        yield connected


def marker(name: str) -> str:
    return f"{name}-{secrets.token_hex(3)}"


def final_of(messages: list[dict[str, Any]]) -> dict[str, Any]:
    response: dict[str, Any] = messages[-1]["response"]
    return response


def upstream_messages(upstream_url: str, text: str) -> list[dict[str, Any]]:
    """The chat messages of the one upstream request whose last user message says `text`."""
    [request] = [
        r for r in requests_mentioning(upstream_url, text) if text in str(r["body"]["messages"][-1])
    ]
    messages: list[dict[str, Any]] = request["body"]["messages"]
    return messages


def not_found(previous_id: str, lane: str | None = None) -> dict[str, Any]:
    envelope = {
        "type": "error",
        "status": 400,
        "error": {
            "type": "invalid_request_error",
            "code": "previous_response_not_found",
            "message": f"Previous response with id '{previous_id}' not found.",
            "param": "previous_response_id",
        },
    }
    return envelope if lane is None else {**envelope, "stream_id": lane}


# --------------------------------------------------------------------------- one turn


def test_a_turn_streams_what_a_streaming_create_streams(
    client: openai.OpenAI, connection: Any, api_url: str
) -> None:
    connection.response.create(model="demo", input="over the socket")
    messages = read_turn(connection)

    kinds = [m["type"] for m in messages]
    deltas = kinds.count("response.output_text.delta")
    assert kinds == [
        "response.created",
        "response.in_progress",
        *message_events(deltas),
        "response.completed",
    ]
    assert [m["sequence_number"] for m in messages] == list(range(len(messages)))
    assert_valid_events(messages)
    assert all("stream_id" not in m for m in messages)  # the default lane
    final = final_of(messages)
    assert_valid_response(final)
    assert final["status"] == "completed"
    assert final["output"][0]["content"][0]["text"] == "Hello! You said: over the socket"
    # The SDK reads every message as its typed event.
    assert isinstance(connection.parse_event(json.dumps(messages[-1])), ResponseWsCompleted)
    # Stored, as any `store: true` response: the same one over HTTP.
    stored = client.responses.with_raw_response.retrieve(final["id"]).http_response.json()
    assert stored == final
    # The same events, in the same order, as the SSE stream of the same request.
    over_http = stream_events(api_url, {"model": "demo", "input": "over the socket"})
    assert [e["type"] for e in over_http] == kinds


def test_turns_run_one_at_a_time_in_the_order_sent(connection: Any) -> None:
    words = [marker("first"), marker("second"), marker("third")]
    for word in words:  # all sent before any is read
        connection.response.create(model="demo", input=f"{word} [[delay:30]]", store=False)
    turns = [read_turn(connection) for _ in words]

    for word, messages in zip(words, turns, strict=True):
        assert messages[0]["type"] == "response.created"
        assert [m["sequence_number"] for m in messages] == list(range(len(messages)))
        final = final_of(messages)
        assert final["status"] == "completed"
        assert final["output"][0]["content"][0]["text"] == f"Hello! You said: {word}"
    assert len({final_of(m)["id"] for m in turns}) == 3


def test_a_flex_turn_runs_at_once_at_the_default_tier(connection: Any) -> None:
    connection.response.create(model="demo", input="no queue here", service_tier="flex")
    final = final_of(read_turn(connection))
    assert (final["status"], final["service_tier"]) == ("completed", "default")


# --------------------------------------------------------------------------- continuation


def test_store_false_continues_on_the_socket_without_reading_storage(
    client: openai.OpenAI,
    connection: Any,
    upstream_url: str,
    db: psycopg.Connection[dict[str, Any]],
) -> None:
    word = marker("cobalt")
    connection.response.create(model="demo", input=f"Remember {word}.", store=False)
    first = final_of(read_turn(connection))
    # Forgotten as it ended: nothing of it is left in storage to read back.
    row = db.execute("SELECT request, output FROM responses WHERE id = %s", (first["id"],))
    assert row.fetchone() == {"request": {"store": False}, "output": None}
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first["id"])

    connection.response.create(
        model="demo", input="What was it?", store=False, previous_response_id=first["id"]
    )
    second_messages = read_turn(connection)
    assert_valid_events(second_messages)
    second = final_of(second_messages)
    assert second["status"] == "completed"
    assert second["previous_response_id"] == first["id"]
    assert [m["content"] for m in upstream_messages(upstream_url, "What was it?")] == [
        f"Remember {word}.",
        f"Hello! You said: Remember {word}.",
        "What was it?",
    ]

    # A third turn carries both before it.
    connection.response.create(
        model="demo", input=f"{word} again", store=False, previous_response_id=second["id"]
    )
    assert final_of(read_turn(connection))["status"] == "completed"
    assert [m["role"] for m in upstream_messages(upstream_url, f"{word} again")] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]


def test_a_store_false_turn_row_carries_its_conversation_only_while_it_runs(
    connection: Any, db: psycopg.Connection[dict[str, Any]]
) -> None:
    word = marker("carried")
    connection.response.create(model="demo", input=word, store=False)
    first = final_of(read_turn(connection))
    connection.response.create(
        model="demo",
        input=f"{word} slowly a b c [[delay:200]]",
        store=False,
        previous_response_id=first["id"],
    )
    created = json.loads(connection.recv_bytes())
    assert created["type"] == "response.created"
    # While it runs, its row holds what a worker would need to finish it after a crash.
    running = db.execute(
        "SELECT request FROM responses WHERE id = %s", (created["response"]["id"],)
    ).fetchone()
    assert running is not None
    carried = running["request"]["carried_items"]
    assert [item["type"] for item in carried] == ["message", "message"]
    assert carried[0]["content"][0]["text"] == word
    rest = read_turn(connection)
    assert final_of(rest)["status"] == "completed"
    ended = db.execute(
        "SELECT request FROM responses WHERE id = %s", (created["response"]["id"],)
    ).fetchone()
    assert ended == {"request": {"store": False}}


def test_a_store_false_response_is_not_found_elsewhere_and_a_new_chain_recovers(
    client: openai.OpenAI, connection: Any
) -> None:
    connection.response.create(model="demo", input="Remember copper.", store=False)
    first = final_of(read_turn(connection))

    with client.responses.connect() as elsewhere:
        elsewhere.response.create(
            model="demo", input="reconnected", store=False, previous_response_id=first["id"]
        )
        [refused] = read_turn(elsewhere)
        assert refused == not_found(first["id"])
        assert isinstance(elsewhere.parse_event(json.dumps(refused)), ResponseWsError)
        # The same socket goes on: a new chain, with the whole context sent again.
        elsewhere.response.create(model="demo", input="Start again: copper.", store=False)
        assert final_of(read_turn(elsewhere))["status"] == "completed"

    connection.response.create(
        model="demo", input="unknown", store=False, previous_response_id="resp_" + "0" * 48
    )
    assert read_turn(connection) == [not_found("resp_" + "0" * 48)]


def test_a_stored_response_is_continued_from_postgres_on_any_connection(
    client: openai.OpenAI, upstream_url: str
) -> None:
    word = marker("stored")
    with client.responses.connect() as first_socket:
        first_socket.response.create(model="demo", input=f"Remember {word}.")
        first = final_of(read_turn(first_socket))
    with client.responses.connect() as second_socket:
        second_socket.response.create(
            model="demo", input=f"{word}?", store=False, previous_response_id=first["id"]
        )
        second = final_of(read_turn(second_socket))
        assert second["status"] == "completed"
        # Continued again on this socket: from its memory now (it was not stored).
        second_socket.response.create(
            model="demo", input=f"{word}!", previous_response_id=second["id"]
        )
        third = final_of(read_turn(second_socket))
    assert [m["content"] for m in upstream_messages(upstream_url, f"{word}!")] == [
        f"Remember {word}.",
        f"Hello! You said: Remember {word}.",
        f"{word}?",
        f"Hello! You said: {word}?",
        f"{word}!",
    ]
    # The third was stored: HTTP continues it, the forgotten second included.
    later = client.responses.create(
        model="demo", input=f"{word} later", previous_response_id=third["id"]
    )
    assert later.status == "completed"
    assert len(upstream_messages(upstream_url, f"{word} later")) == 7
    # Its own input only is its input; what it carried is not listed as such.
    items = client.responses.input_items.list(third["id"])
    assert [item.content[0].text for item in items.data] == [f"{word}!"]  # type: ignore[union-attr]


def test_a_failed_continuation_forgets_the_response_it_continued(connection: Any) -> None:
    connection.response.create(model="demo", input="Remember ember.", store=False)
    first = final_of(read_turn(connection))

    connection.response.create(
        model="demo",
        store=False,
        previous_response_id=first["id"],
        input=[{"type": "function_call_output", "call_id": "call_missing", "output": "x"}],
    )
    [refused] = read_turn(connection)
    assert refused == {
        "type": "error",
        "status": 400,
        "error": {
            "type": "invalid_request_error",
            "code": "invalid_value",
            "message": "No tool call found for function call output with call_id call_missing.",
            "param": "input[0].call_id",
        },
    }
    connection.response.create(
        model="demo", input="stale", store=False, previous_response_id=first["id"]
    )
    assert read_turn(connection) == [not_found(first["id"])]


def test_a_continuation_that_fails_upstream_forgets_it_too(connection: Any) -> None:
    connection.response.create(model="demo", input="Remember slate.", store=False)
    first = final_of(read_turn(connection))
    connection.response.create(
        model="demo",
        input="fail now [[status:500]]",
        store=False,
        previous_response_id=first["id"],
    )
    failed = read_turn(connection)
    assert [m["type"] for m in failed[-2:]] == ["error", "response.failed"]
    assert failed[-2]["error"]["code"] == "upstream_error"
    connection.response.create(
        model="demo", input="stale", store=False, previous_response_id=first["id"]
    )
    assert read_turn(connection) == [not_found(first["id"])]


def test_a_client_tool_round_trip_without_storage(connection: Any) -> None:
    connection.response.create(
        model="demo", input="[[call:client_fn {}]]", tools=[CLIENT_TOOL], store=False
    )
    first = final_of(read_turn(connection))
    [call] = first["output"]
    assert call["type"] == "function_call"
    connection.response.create(
        model="demo",
        tools=[CLIENT_TOOL],
        store=False,
        previous_response_id=first["id"],
        input=[{"type": "function_call_output", "call_id": call["call_id"], "output": "42"}],
    )
    second = final_of(read_turn(connection))
    assert second["output"][0]["content"][0]["text"] == "Tool results: client_fn=42"


# --------------------------------------------------------------------------- lanes


def test_a_lane_is_echoed_on_every_message_of_its_turns(client: openai.OpenAI) -> None:
    with client.responses.connect() as connection:
        connection.send(create(input="on a lane", stream_id="lane-1.a", store=False))
        messages = read_turn(connection)
        assert {m["stream_id"] for m in messages} == {"lane-1.a"}
        previous = final_of(messages)["id"]
        # A fork from another lane continues it; that lane's refusal does not forget it.
        connection.send(
            create(
                input=[{"type": "function_call_output", "call_id": "nope", "output": "x"}],
                stream_id="lane-2",
                store=False,
                previous_response_id=previous,
            )
        )
        [refused] = read_turn(connection)
        assert refused["stream_id"] == "lane-2" and refused["status"] == 400
        connection.send(create(input="forked", stream_id="lane-2", previous_response_id=previous))
        assert final_of(read_turn(connection))["status"] == "completed"

    # The SDK's lane helper collects a lane's final response.
    limits = ResponsesWebSocketLimits(
        max_lanes=4,
        max_events_per_lane=128,
        max_events=512,
        max_bytes_per_lane=2**20,
        max_bytes=2**21,
    )
    with (
        client.responses.connect() as connection,
        ResponsesWebSocketSession(connection, limits=limits) as session,
    ):
        lane = session.lane("helper")
        lane.send({"type": "response.create", "model": "demo", "input": "via the helper"})
        response = lane.get_final_response(timeout=30)
    assert response.output_text == "Hello! You said: via the helper"


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("message", "status", "code", "param"),
    [
        ("not json", 400, "invalid_json", None),
        ('"a string"', 400, "invalid_json", None),
        (json.dumps({"model": "demo", "input": "x"}), 400, "missing_required_parameter", "type"),
        (json.dumps(create(input="x") | {"type": "response.cancel"}), 400, "invalid_value", "type"),
        (json.dumps(create(input="x", stream=True)), 400, "unsupported_parameter", "stream"),
        (
            json.dumps(create(input="x", background=True)),
            400,
            "unsupported_parameter",
            "background",
        ),
        (
            json.dumps(create(input="x", stream_options={"include_obfuscation": False})),
            400,
            "unsupported_parameter",
            "stream_options",
        ),
        (json.dumps(create(input="x", temperature=9)), 400, "invalid_value", "temperature"),
        (json.dumps(create(input="x", bogus=1)), 400, "unknown_parameter", "bogus"),
        (
            json.dumps(create(input="x", stream_id="has space")),
            400,
            "invalid_stream_id",
            "stream_id",
        ),
        (json.dumps(create(input=[{"type": "nope"}])), 400, "invalid_value", "input[0].type"),
        (
            json.dumps({"type": "response.create", "input": "x"}),
            400,
            "missing_required_parameter",
            "model",
        ),
    ],
)
def test_a_refused_turn_is_an_error_envelope_and_the_socket_goes_on(
    api_url: str, message: str, status: int, code: str, param: str | None
) -> None:
    with raw_socket(api_url) as socket:
        socket.send(message)
        [refused] = read_turn(socket)
        assert refused["type"] == "error"
        assert refused["status"] == status
        assert refused["error"]["code"] == code
        assert refused["error"]["param"] == param
        assert refused["error"]["type"] == "invalid_request_error"
        assert refused["error"]["message"]
        socket.send(create(input="still here"))
        assert final_of(read_turn(socket))["status"] == "completed"


def test_a_message_over_the_body_limit_is_413(make_settings: Callable[..., Settings]) -> None:
    with running_api(make_settings(max_body_bytes=1000)) as url, raw_socket(url) as socket:
        socket.send(create(input="x" * 1000))
        [refused] = read_turn(socket)
        assert (refused["status"], refused["error"]["code"]) == (413, "body_too_large")
        socket.send(create(input="small"))
        assert final_of(read_turn(socket))["status"] == "completed"


def test_admission_limits_hold_on_the_socket(make_settings: Callable[..., Settings]) -> None:
    with running_api(make_settings(max_inline_per_process=0)) as url, raw_socket(url) as socket:
        socket.send(create(input="no room"))
        [refused] = read_turn(socket)
    assert refused["status"] == 429
    assert refused["error"]["type"] == "rate_limit_exceeded"
    assert refused["error"]["code"] == "rate_limit_exceeded"
    assert refused["error"]["headers"] == {"retry-after": "1"}


# --------------------------------------------------------------------------- server-side work


def test_server_side_tools_run_over_the_socket(connection: Any, tool_server: ToolServer) -> None:
    connection.response.create(
        model="demo", input='Weather? [[call:lookup_weather {"city": "Oslo"}]]', store=False
    )
    messages = read_turn(connection)
    final = final_of(messages)
    assert [item["type"] for item in final["output"]] == [
        "function_call",
        "function_call_output",
        "message",
    ]
    assert [call.arguments for call in tool_server.calls_for(final["id"])] == [{"city": "Oslo"}]
    assert final["output"][2]["content"][0]["text"].startswith("Tool results: lookup_weather=")
    assert_valid_events(messages)


def test_mcp_runs_over_the_socket(connection: Any, mcp_server: McpTestServer) -> None:
    a, b = secrets.randbelow(1000), secrets.randbelow(1000)
    tool = {
        "type": "mcp",
        "server_label": "calc",
        "server_url": mcp_server.url,
        "require_approval": "never",
    }
    connection.response.create(
        model="demo", input=f'[[call:add {{"a": {a}, "b": {b}}}]]', tools=[tool]
    )
    messages = read_turn(connection)
    final = final_of(messages)
    assert [item["type"] for item in final["output"]] == ["mcp_list_tools", "mcp_call", "message"]
    assert final["output"][1]["output"] == str(a + b)
    kinds = [m["type"] for m in messages]
    assert all(kind in kinds for kind in MCP_EVENTS)


def test_reasoning_streams_over_the_socket(connection: Any) -> None:
    connection.response.create(
        model="demo", input="think it over [[think]]", include=["reasoning.encrypted_content"]
    )
    messages = read_turn(connection)
    kinds = [m["type"] for m in messages]
    reasoning_deltas = kinds.count("response.reasoning_text.delta")
    text_deltas = kinds.count("response.output_text.delta")
    assert reasoning_deltas > 0
    assert kinds == [
        "response.created",
        "response.in_progress",
        *reasoning_events(reasoning_deltas),
        *message_events(text_deltas),
        "response.completed",
    ]
    reasoning, message = final_of(messages)["output"]
    assert reasoning["type"] == "reasoning"
    assert reasoning["encrypted_content"]
    assert message["content"][0]["text"] == "Hello! You said: think it over"


# --------------------------------------------------------------------------- the connection


def test_a_client_that_goes_away_cancels_its_turn(
    api_url: str, upstream_url: str, db: psycopg.Connection[dict[str, Any]]
) -> None:
    word = marker("leaving")
    words = " ".join(f"w{i}" for i in range(30))
    with raw_socket(api_url) as socket:
        socket.send(create(input=f"{word} {words} [[delay:300]]"))
        while (message := json.loads(socket.recv_bytes()))["type"] != "response.output_text.delta":
            if message["type"] == "response.created":
                response_id = message["response"]["id"]
    # Gone mid-turn: 30 words at 300 ms would take 9 s; cancelled work ends long before.

    def ended() -> dict[str, Any] | None:
        row = db.execute(
            "SELECT status, output FROM responses WHERE id = %s", (response_id,)
        ).fetchone()
        return row if row and row["status"] != "in_progress" else None

    row = wait_for(ended, timeout_s=5, what="the turn to end")
    assert row["status"] == "cancelled"
    assert row["output"][0]["status"] == "incomplete"
    assert stream_end(upstream_url, word, timeout_s=5) == "abandoned"


def test_the_handshake_is_authenticated(make_settings: Callable[..., Settings]) -> None:
    with running_api(make_settings(api_keys="ws-alpha,ws-beta")) as url:
        for key, code in ((None, "missing_api_key"), ("wrong", "invalid_api_key")):
            with pytest.raises(InvalidStatus) as refused, raw_socket(url, key):
                pass
            reply = refused.value.response
            assert reply.status_code == 401
            assert json.loads(reply.body or b"")["error"]["code"] == code
            assert reply.headers["x-request-id"].startswith("req_")

        with sdk_client(url, "ws-alpha") as alpha, alpha.responses.connect() as socket:
            socket.response.create(model="demo", input="alpha's")
            alphas = final_of(read_turn(socket))
            socket.response.create(model="demo", input="alpha's unstored", store=False)
            unstored = final_of(read_turn(socket))
        # Another key continues neither: not its responses, and not its connection.
        with sdk_client(url, "ws-beta") as beta, beta.responses.connect() as socket:
            for previous in (alphas["id"], unstored["id"]):
                socket.response.create(model="demo", input="beta's", previous_response_id=previous)
                assert read_turn(socket) == [not_found(previous)]
        # The SDK reports the refusal as its WebSocket client does.
        with pytest.raises(InvalidStatus) as refused, sdk_client(url, "wrong") as stranger:
            with stranger.responses.connect():
                pass
        assert refused.value.response.status_code == 401


def test_the_handshake_reply_names_the_request(api_url: str) -> None:
    with raw_socket(api_url) as socket:
        assert socket.connection.response is not None
        assert socket.connection.response.headers["x-request-id"].startswith("req_")


def test_a_connection_ends_at_its_time_limit(make_settings: Callable[..., Settings]) -> None:
    with running_api(make_settings(websocket_connection_limit_s=1.5)) as url:
        with raw_socket(url) as socket:
            socket.send(create(input="before the limit"))
            assert final_of(read_turn(socket))["status"] == "completed"
            [limit] = read_turn(socket)  # nothing sent: the server speaks at the limit
            assert limit == {
                "type": "error",
                "status": 400,
                "error": {
                    "type": "invalid_request_error",
                    "code": "websocket_connection_limit_reached",
                    "message": limit["error"]["message"],
                    "param": None,
                },
            }
            assert socket.wait_closed() == 1001
