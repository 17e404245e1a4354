"""Each way the upstream can fail ends the response in its documented state, once."""

from __future__ import annotations

from typing import Any

import openai
import psycopg
import pytest

from tests.support.schema import assert_valid_event, assert_valid_response
from tests.support.sse import stream_events

LONG_INPUT = " ".join(f"word{i}" for i in range(40))


def types_of(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


@pytest.mark.parametrize(
    ("directive", "message"),
    [
        # A retryable status: the default 3 tries, all failing. (A 4xx, 429 included, is the
        # client's error instead: test_upstream_refusals.)
        ("[[status:500]]", "upstream returned 500: demo upstream error 500 (after 3 attempts)"),
        ("[[cut]]", "stream ended without stop event"),
        ("[[empty]]", "empty upstream stream"),
        ("[[mid-error]]", "upstream error mid-stream: demo upstream failed mid-stream"),
    ],
)
def test_blocking_failure_is_recorded(client: openai.OpenAI, directive: str, message: str) -> None:
    raw = client.responses.with_raw_response.create(model="demo", input=f"one two {directive}")
    assert_valid_response(raw.http_response.json())
    response = raw.parse()
    assert response.status == "failed"
    assert response.error is not None
    assert response.error.code == "upstream_error"
    assert response.error.message == message
    assert client.responses.retrieve(response.id).status == "failed"


def test_cut_stream_closes_the_partial_item_incomplete_then_fails(api_url: str) -> None:
    events = stream_events(api_url, {"model": "demo", "input": "one two three four [[cut]]"})

    for event in events:
        assert_valid_event(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    types = types_of(events)
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-5:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "error",
        "response.failed",
    ]
    assert events[-3]["item"]["status"] == "incomplete"
    assert events[-2]["error"]["message"] == "stream ended without stop event"
    failed = events[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "upstream_error"
    assert failed["output"][0]["status"] == "incomplete"
    assert failed["output"][0]["content"][0]["text"] == "Hello! You said: "


def test_upstream_error_status_streams_error_then_failed(api_url: str) -> None:
    events = stream_events(api_url, {"model": "demo", "input": "hi [[status:503]]"})
    assert types_of(events) == [
        "response.created",
        "response.in_progress",
        "error",
        "response.failed",
    ]
    assert events[2]["error"]["message"] == (
        "upstream returned 503: demo upstream error 503 (after 3 attempts)"
    )
    assert events[3]["response"]["error"]["code"] == "upstream_error"


def test_sdk_surfaces_the_stream_error(client: openai.OpenAI) -> None:
    seen: list[str] = []
    with pytest.raises(openai.APIError) as info:
        with client.responses.create(model="demo", input="a b [[mid-error]]", stream=True) as s:
            seen.extend(event.type for event in s)
    assert "demo upstream failed mid-stream" in info.value.message
    assert seen[:2] == ["response.created", "response.in_progress"]


def test_length_finish_is_incomplete_with_max_output_tokens(client: openai.OpenAI) -> None:
    response = client.responses.create(model="demo", input=LONG_INPUT, max_output_tokens=16)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output[0].status == "incomplete"
    assert response.usage is not None
    assert response.usage.output_tokens == 16


def test_length_finish_streams_response_incomplete(api_url: str) -> None:
    events = stream_events(api_url, {"model": "demo", "input": LONG_INPUT, "max_output_tokens": 16})
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert_valid_event(events[-1])


def test_missing_usage_completes_and_records_the_miss(
    client: openai.OpenAI, db: psycopg.Connection[dict[str, Any]]
) -> None:
    response = client.responses.create(model="demo", input="count me [[no-usage]]")
    assert response.status == "completed"
    assert response.output_text == "Hello! You said: count me"
    assert response.usage is None
    row = db.execute("SELECT usage_missing FROM responses WHERE id = %s", (response.id,)).fetchone()
    assert row == {"usage_missing": True}


def test_anthropic_shaped_usage_is_normalised(client: openai.OpenAI) -> None:
    response = client.responses.create(model="demo", input="three words here [[anthropic-usage]]")
    assert response.usage is not None
    # The demo counts 4 prompt words; Anthropic's input excludes 3 cache reads and 2 writes.
    assert response.usage.input_tokens == 4 + 3 + 2
    assert response.usage.input_tokens_details.cached_tokens == 3
    assert response.usage.input_tokens_details.cache_write_tokens == 2
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens


def test_reasoning_and_cached_tokens_pass_through(client: openai.OpenAI) -> None:
    response = client.responses.create(model="demo", input="think [[reasoning]]")
    assert response.usage is not None
    assert response.usage.output_tokens_details.reasoning_tokens == 5
    assert response.usage.input_tokens_details.cached_tokens == 2
