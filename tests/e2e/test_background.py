"""Background responses: queued -> worker -> GET, live tail, resume from any replica.

A real worker process runs the jobs; the API under test is uvicorn in-process, and a second
API runs as its own process on the same database.
"""

from __future__ import annotations

import itertools
import secrets
from typing import Any

import httpx
import openai
import psycopg
import pytest

from tests.support.processes import Command
from tests.support.schema import assert_valid_event, assert_valid_response
from tests.support.sse import iter_frames
from tests.support.waiting import wait_for

pytestmark = pytest.mark.usefixtures("worker")


def finished(client: openai.OpenAI, response_id: str) -> Any:
    def probe() -> Any:
        response = client.responses.retrieve(response_id)
        return response if response.status not in ("queued", "in_progress") else None

    return wait_for(probe, timeout_s=20, what=f"{response_id} to finish")


def replay(base_url: str, response_id: str, after: int | None = None) -> list[dict[str, Any]]:
    """GET ?stream=true read to its end, raw."""
    params: dict[str, Any] = {"stream": "true"}
    if after is not None:
        params["starting_after"] = after
    url = f"{base_url}/v1/responses/{response_id}"
    with httpx.stream("GET", url, params=params, timeout=30) as response:
        assert response.status_code == 200, response.read()
        return [event for _, event in iter_frames(response)]


def test_background_create_is_queued_then_completes_like_blocking(
    client: openai.OpenAI, worker: Command
) -> None:
    raw = client.responses.with_raw_response.create(
        model="demo", input="background please", background=True
    )
    assert_valid_response(raw.http_response.json())
    queued = raw.parse()
    assert queued.status == "queued"
    assert queued.background is True
    assert queued.output == []
    assert queued.usage is None

    done = finished(client, queued.id)
    blocking = client.responses.create(model="demo", input="background please")
    assert done.status == "completed"
    assert done.output_text == blocking.output_text
    assert done.usage == blocking.usage
    assert_valid_response(
        client.responses.with_raw_response.retrieve(queued.id).http_response.json()
    )


def test_background_stream_reads_to_the_end(client: openai.OpenAI) -> None:
    with client.responses.create(
        model="demo", input="stream from the log", background=True, stream=True
    ) as stream:
        events = list(stream)

    types = [e.type for e in events]
    assert types[:3] == ["response.created", "response.queued", "response.in_progress"]
    assert types[-1] == "response.completed"
    assert events[0].response.status == "queued"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    for event in events:
        assert_valid_event(event.to_dict(mode="json"))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "Hello! You said: stream from the log"
    assert client.responses.retrieve(events[0].response.id).output_text == text


def test_resume_after_disconnect_gives_exactly_the_rest(
    client: openai.OpenAI, api_url: str
) -> None:
    words = " ".join(f"w{i}" for i in range(12))
    with client.responses.create(
        model="demo", input=f"{words} [[delay:60]]", background=True, stream=True
    ) as stream:
        seen = list(itertools.islice(stream, 6))  # then disconnect, mid-run
    response_id = seen[0].response.id
    k = len(seen)

    with client.responses.retrieve(response_id, stream=True, starting_after=k - 1) as rest:
        resumed = list(rest)

    everything = replay(api_url, response_id)
    assert [e.sequence_number for e in resumed] == list(range(k, len(everything)))
    assert [e.to_dict(mode="json") for e in resumed] == everything[k:]
    assert resumed[-1].type == "response.completed"


def test_resume_through_a_second_api_process(client: openai.OpenAI, second_api_url: str) -> None:
    with client.responses.create(
        model="demo", input="one two three [[delay:50]]", background=True, stream=True
    ) as stream:
        first = [event.to_dict(mode="json") for event in itertools.islice(stream, 4)]

    rest = replay(second_api_url, first[0]["response"]["id"], after=3)
    combined = first + rest
    assert [e["sequence_number"] for e in combined] == list(range(len(combined)))
    assert combined[-1]["type"] == "response.completed"
    text = "".join(e["delta"] for e in combined if e["type"] == "response.output_text.delta")
    assert text == "Hello! You said: one two three"


def test_replay_after_the_end_replays_the_whole_log_and_closes(
    client: openai.OpenAI, api_url: str
) -> None:
    with client.responses.create(
        model="demo", input="finished already", background=True, stream=True
    ) as stream:
        live = [e.to_dict(mode="json") for e in stream]
    assert replay(api_url, live[0]["response"]["id"]) == live
    assert replay(api_url, live[0]["response"]["id"], after=len(live) - 1) == []


def test_sdk_stream_helper_resumes_by_response_id(client: openai.OpenAI) -> None:
    queued = client.responses.create(
        model="demo", input="helper [[delay:30]]", background=True, stream=True
    )
    with queued as initial:
        response_id = next(iter(initial)).response.id

    with client.responses.stream(response_id=response_id) as stream:
        types = [event.type for event in stream]
        final = stream.get_final_response()
    assert types[0] == "response.created"
    assert types[-1] == "response.completed"
    assert final.output_text == "Hello! You said: helper"


def test_resume_of_a_response_without_event_log_is_400(client: openai.OpenAI) -> None:
    blocking = client.responses.create(model="demo", input="no log")
    background = client.responses.create(model="demo", input="no log", background=True)
    for response_id in (blocking.id, background.id):
        with pytest.raises(openai.BadRequestError) as info:
            with client.responses.retrieve(response_id, stream=True) as stream:
                list(stream)
        assert info.value.body["param"] == "stream"  # type: ignore[index]


def test_background_needs_store(client: openai.OpenAI, db: psycopg.Connection[Any]) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="demo", input="x", background=True, store=False)
    assert info.value.body["param"] == "background"  # type: ignore[index]


def test_get_shows_items_finished_so_far(client: openai.OpenAI) -> None:
    tools = [{"type": "function", "name": n, "parameters": {"type": "object"}} for n in ("a", "b")]
    queued = client.responses.create(
        model="demo",
        input='[[call:a {"x": 1}]] [[call:b {"y": 2}]] [[delay:400]]',
        tools=tools,  # type: ignore[arg-type]
        background=True,
    )

    def first_call_done() -> Any:
        response = client.responses.retrieve(queued.id)
        return response if response.output else None

    partial = wait_for(first_call_done, timeout_s=20, what="the first call to be done")
    assert partial.status == "in_progress"
    assert [item.name for item in partial.output] == ["a"]  # type: ignore[union-attr]
    done = finished(client, queued.id)
    assert [item.name for item in done.output] == ["a", "b"]  # type: ignore[union-attr]


@pytest.mark.parametrize("after", ["-2", "x"])
def test_bad_starting_after_is_400(client: openai.OpenAI, api_url: str, after: str) -> None:
    with client.responses.create(
        model="demo", input="bad cursor", background=True, stream=True
    ) as stream:
        response_id = next(iter(stream)).response.id
    reply = httpx.get(
        f"{api_url}/v1/responses/{response_id}", params={"stream": "true", "starting_after": after}
    )
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "starting_after"


def test_a_turn_cut_mid_stream_is_redone_in_the_worker(client: openai.OpenAI) -> None:
    """No client watched it live, so the worker may redo it; the cut item is closed first."""
    marker = secrets.token_hex(4)
    with client.responses.create(
        model="demo", input=f"redo {marker} a b c [[cut-first:1]]", background=True, stream=True
    ) as stream:
        events = [event.to_dict(mode="json") for event in stream]

    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[-1]["type"] == "response.completed"
    [message] = events[-1]["response"]["output"]
    assert message["content"][0]["text"] == f"Hello! You said: redo {marker} a b c"
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [item["status"] for item in done] == ["incomplete", "completed"]


def test_a_turn_cut_mid_stream_fails_an_inline_response(client: openai.OpenAI) -> None:
    """A client saw the first tokens live: replaying the turn into its stream is not done."""
    marker = secrets.token_hex(4)
    response = client.responses.create(model="demo", input=f"inline {marker} a b [[cut-first:1]]")
    assert response.status == "failed"
    assert response.error is not None
    assert response.error.message == "stream ended without stop event"
