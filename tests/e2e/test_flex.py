"""The flex tier: deferred on a low-priority queue; the request is held (JSON) or answered
first and replayed at the end (SSE); a full queue is a 429 and a long wait a 504."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import openai
import psycopg
import pytest

from app.config import Settings
from tests.support.clients import sdk_client
from tests.support.schema import assert_valid_event, assert_valid_response
from tests.support.servers import running_api
from tests.support.sse import TEXT_EVENT_ORDER, frames_from_lines, iter_frames
from tests.support.waiting import wait_for

pytestmark = pytest.mark.usefixtures("worker")


def test_flex_blocking_holds_the_request_until_done(
    client: openai.OpenAI, db: psycopg.Connection[dict[str, Any]]
) -> None:
    raw = client.responses.with_raw_response.create(
        model="demo", input="flex me", service_tier="flex"
    )
    assert_valid_response(raw.http_response.json())
    response = raw.parse()
    assert response.status == "completed"
    assert response.service_tier == "flex"
    assert response.background is False
    assert response.output_text == "Hello! You said: flex me"
    job = db.execute(
        "SELECT j.queue_name, j.status FROM procrastinate_jobs j"
        " JOIN responses r ON r.job_id = j.id WHERE r.id = %s",
        (response.id,),
    ).fetchone()
    assert job == {"queue_name": "flex", "status": "succeeded"}


def test_flex_stream_responds_first_then_replays_the_finished_response(api_url: str) -> None:
    body = {"model": "demo", "input": "flex stream", "service_tier": "flex", "stream": True}
    with httpx.stream("POST", f"{api_url}/v1/responses", json=body, timeout=30) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        assert next(lines) == ": keep-alive"  # sent before the work is even picked up
        events = [event for _, event in frames_from_lines(lines)]

    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    # A replay sends the whole text as one delta.
    assert [e["type"] for e in events] == TEXT_EVENT_ORDER
    for event in events:
        assert_valid_event(event)
    assert events[4]["delta"] == "Hello! You said: flex stream"
    assert events[-1]["response"]["service_tier"] == "flex"


def test_flex_stream_through_the_sdk(client: openai.OpenAI) -> None:
    with client.responses.create(
        model="demo", input="flex sdk", service_tier="flex", stream=True
    ) as stream:
        events = list(stream)
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == "Hello! You said: flex sdk"


def test_full_flex_queue_is_429_and_writes_nothing(
    make_settings: Callable[..., Settings], db: psycopg.Connection[dict[str, Any]]
) -> None:
    before = db.execute("SELECT count(*) AS n FROM responses").fetchone()
    with running_api(make_settings(flex_max_queue_depth=0)) as url, sdk_client(url) as sdk:
        with pytest.raises(openai.RateLimitError) as info:
            sdk.responses.create(model="demo", input="x", service_tier="flex")
    assert info.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
    assert "Resource Unavailable" in info.value.body["message"]  # type: ignore[index]
    assert db.execute("SELECT count(*) AS n FROM responses").fetchone() == before


def test_flex_timeout_is_504_and_the_response_keeps_running(
    make_settings: Callable[..., Settings], client: openai.OpenAI
) -> None:
    settings = make_settings(flex_timeout_s=0.2, flex_poll_interval_s=0.05)
    with running_api(settings) as url, sdk_client(url) as sdk:
        with pytest.raises(openai.APIStatusError) as info:
            sdk.responses.create(
                model="demo", input="slow flex a b c d [[delay:200]]", service_tier="flex"
            )
    assert info.value.status_code == 504
    assert info.value.body["code"] == "timeout"  # type: ignore[index]
    found = re.search(r"resp_[0-9a-f]+", info.value.body["message"])  # type: ignore[index]
    assert found

    def completed() -> Any:
        response = client.responses.retrieve(found.group(0))
        return response if response.status == "completed" else None

    done = wait_for(completed, timeout_s=20, what="the flex response to complete")
    assert done.output_text == "Hello! You said: slow flex a b c d"


def test_flex_stream_replays_a_multi_step_response_as_get_shows_it(
    api_url: str, client: openai.OpenAI
) -> None:
    body = {
        "model": "demo",
        "input": "[[call:current_time]] flex tools",
        "service_tier": "flex",
        "stream": True,
    }
    with httpx.stream("POST", f"{api_url}/v1/responses", json=body, timeout=30) as response:
        events = [event for _, event in iter_frames(response)]

    done_items = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    final = events[-1]["response"]
    assert [item["type"] for item in done_items] == [
        "function_call",
        "function_call_output",
        "message",
    ]
    stored = client.responses.with_raw_response.retrieve(final["id"]).http_response.json()
    assert done_items == final["output"] == stored["output"]
    assert [e["output_index"] for e in events if e["type"] == "response.output_item.done"] == [
        0,
        1,
        2,
    ]
