"""Every SSE stream Ferry ends closes with the specification's literal `data: [DONE]`, right
after its last event: inline, background (as created and resumed with GET), flex (replayed,
or timed out), whether the response completed, failed or was cancelled. The SDK, which
stops reading at `[DONE]`, still sees every event."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from app.config import Settings
from tests.support.servers import running_api

DONE = b"data: [DONE]\n\n"

pytestmark = pytest.mark.usefixtures("worker")


def raw_stream(method: str, url: str, body: dict[str, Any] | None = None) -> bytes:
    with httpx.stream(method, url, json=body, timeout=60) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return response.read()


def last_event_before_done(raw: bytes) -> dict[str, Any]:
    """The stream ends with one `[DONE]`, alone in its frame, after an event; that event."""
    assert raw.endswith(b"\n\n" + DONE), raw[-200:]
    assert raw.count(b"[DONE]") == 1
    frames = raw[: -len(DONE)].rstrip(b"\n").split(b"\n\n")
    name, data = frames[-1].split(b"\n")
    event: dict[str, Any] = json.loads(data.removeprefix(b"data: "))
    assert name == f"event: {event['type']}".encode()
    return event


def test_an_inline_stream_ends_with_done(api_url: str) -> None:
    body = {"model": "demo", "input": "done inline", "stream": True}
    assert last_event_before_done(raw_stream("POST", f"{api_url}/v1/responses", body))["type"] == (
        "response.completed"
    )
    failing = {**body, "input": "done failing [[status:500]]"}
    event = last_event_before_done(raw_stream("POST", f"{api_url}/v1/responses", failing))
    assert event["type"] == "response.failed"


def test_background_streams_end_with_done_as_created_and_resumed(api_url: str) -> None:
    body = {"model": "demo", "input": "done background", "stream": True, "background": True}
    raw = raw_stream("POST", f"{api_url}/v1/responses", body)
    final = last_event_before_done(raw)
    assert final["type"] == "response.completed"
    url = f"{api_url}/v1/responses/{final['response']['id']}?stream=true"
    assert last_event_before_done(raw_stream("GET", url)) == final
    resumed = raw_stream("GET", f"{url}&starting_after={final['sequence_number'] - 1}")
    assert last_event_before_done(resumed) == final


def test_a_cancelled_background_stream_ends_with_done(api_url: str, client: openai.OpenAI) -> None:
    body = {
        "model": "demo",
        "input": "done cancelled a b c d e f g h [[delay:300]]",
        "stream": True,
        "background": True,
    }
    with httpx.stream("POST", f"{api_url}/v1/responses", json=body, timeout=60) as response:
        lines = response.iter_lines()
        created = json.loads(next(line for line in lines if line.startswith("data:"))[5:])
        client.responses.cancel(created["response"]["id"])
        rest = "\n".join(lines).encode()
    assert last_event_before_done(rest + b"\n")["type"] == "response.cancelled"


def test_flex_streams_end_with_done(api_url: str, make_settings: Callable[..., Settings]) -> None:
    body = {"model": "demo", "input": "done flex", "stream": True, "service_tier": "flex"}
    event = last_event_before_done(raw_stream("POST", f"{api_url}/v1/responses", body))
    assert event["type"] == "response.completed"

    slow = {**body, "input": "done flex slowly a b c d e [[delay:300]]"}
    with running_api(make_settings(flex_timeout_s=0.3, flex_poll_interval_s=0.05)) as url:
        timed_out = last_event_before_done(raw_stream("POST", f"{url}/v1/responses", slow))
    assert timed_out["type"] == "error"
    assert timed_out["error"]["code"] == "timeout"


def test_the_sdk_reads_every_event_before_done(client: openai.OpenAI) -> None:
    with client.responses.create(model="demo", input="done sdk", stream=True) as stream:
        events = list(stream)
    assert events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    with client.responses.stream(model="demo", input="done helper") as helper:
        final = helper.get_final_response()
    assert final.output_text == "Hello! You said: done helper"
