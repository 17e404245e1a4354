"""Inline modes end to end: the openai SDK -> Ferry (uvicorn) -> demo upstream, on Postgres."""

from __future__ import annotations

import json
from collections.abc import Callable

import openai
import pytest

from app.config import Settings
from tests.fakes.upstream.spy import spied_requests
from tests.support.clients import sdk_client
from tests.support.schema import assert_valid_event, assert_valid_response
from tests.support.servers import running_api
from tests.support.sse import TEXT_EVENT_ORDER

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def collapse(types: list[str]) -> list[str]:
    """Event types with runs of the same type folded into one (deltas repeat)."""
    return [t for i, t in enumerate(types) if i == 0 or types[i - 1] != t]


def test_blocking_create_returns_the_completed_response(client: openai.OpenAI) -> None:
    raw = client.responses.with_raw_response.create(model="demo", input="How are you?")
    assert_valid_response(raw.http_response.json())
    response = raw.parse()

    assert response.status == "completed"
    assert response.id.startswith("resp_")
    assert response.output_text == "Hello! You said: How are you?"
    assert response.usage is not None
    assert response.usage.output_tokens == 6
    assert response.usage.total_tokens == response.usage.input_tokens + 6


def test_response_echoes_request_parameters(client: openai.OpenAI) -> None:
    response = client.responses.with_raw_response.create(
        model="demo",
        input="echo",
        instructions="Be brief.",
        temperature=0.3,
        top_p=0.9,
        max_output_tokens=64,
        metadata={"team": "ferry"},
        tools=[WEATHER_TOOL],
        tool_choice="auto",
        parallel_tool_calls=False,
        safety_identifier="user-1",
        prompt_cache_key="cache-1",
    )
    raw = response.http_response.json()
    assert_valid_response(raw)
    assert raw["instructions"] == "Be brief."
    assert raw["temperature"] == 0.3
    assert raw["top_p"] == 0.9
    assert raw["max_output_tokens"] == 64
    assert raw["metadata"] == {"team": "ferry"}
    assert raw["parallel_tool_calls"] is False
    assert raw["tools"][0]["name"] == "get_weather"
    assert raw["safety_identifier"] == "user-1"
    assert raw["prompt_cache_key"] == "cache-1"
    assert raw["background"] is False
    assert raw["store"] is True


def test_retrieve_returns_the_stored_response(client: openai.OpenAI) -> None:
    created = client.responses.create(model="demo", input="remember me")
    raw = client.responses.with_raw_response.retrieve(created.id)
    assert_valid_response(raw.http_response.json())
    fetched = raw.parse()

    assert fetched.id == created.id
    assert fetched.status == "completed"
    assert fetched.output_text == created.output_text
    assert fetched.usage == created.usage
    assert fetched.completed_at is not None


def test_retrieve_unknown_id_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.retrieve("resp_does_not_exist")
    assert info.value.body["param"] == "response_id"  # type: ignore[index]


def test_stream_emits_openai_event_order_with_gapless_sequence(client: openai.OpenAI) -> None:
    with client.responses.create(model="demo", input="stream this please", stream=True) as stream:
        events = list(stream)

    types = [e.type for e in events]
    assert collapse(types) == TEXT_EVENT_ORDER
    assert [e.sequence_number for e in events] == list(range(len(events)))
    for event in events:
        assert_valid_event(event.to_dict(mode="json"))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "Hello! You said: stream this please"
    assert events[0].response.status == "in_progress"
    final = events[-1].response
    assert final.status == "completed"
    assert final.output_text == deltas
    assert final.usage is not None

    stored = client.responses.retrieve(final.id)
    assert stored.status == "completed"
    assert stored.output_text == deltas
    assert stored.usage == final.usage


def test_stream_of_function_call_events(client: openai.OpenAI) -> None:
    with client.responses.create(
        model="demo",
        input='What is the weather? [[call:get_weather {"city": "Paris"}]]',
        tools=[WEATHER_TOOL],
        stream=True,
    ) as stream:
        events = list(stream)

    assert collapse([e.type for e in events]) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    for event in events:
        assert_valid_event(event.to_dict(mode="json"))
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert json.loads(done.arguments) == {"city": "Paris"}
    call = events[-1].response.output[0]
    assert call.type == "function_call"
    assert call.name == "get_weather"
    assert call.status == "completed"
    assert call.call_id.startswith("call_")


def test_upstream_request_carries_the_mapped_parameters(
    client: openai.OpenAI, upstream_url: str
) -> None:
    client.responses.create(
        model="demo-model-x",
        instructions="Answer in French.",
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
                ],
            }
        ],
        temperature=0.5,
        top_p=0.8,
        max_output_tokens=100,
        text={
            "format": {
                "type": "json_schema",
                "name": "answer",
                "schema": {"type": "object", "properties": {"a": {"type": "string"}}},
            }
        },
    )
    body = spied_requests(upstream_url)[-1]["body"]
    assert body["model"] == "demo-model-x"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0.5
    assert body["top_p"] == 0.8
    assert body["max_tokens"] == 100
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["name"] == "answer"
    assert body["messages"][0] == {"role": "system", "content": "Answer in French."}
    parts = body["messages"][1]["content"]
    assert parts[0] == {"type": "text", "text": "What is this?"}
    assert parts[1]["image_url"]["url"] == "data:image/png;base64,AAAA"


def test_previous_response_must_exist(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="demo", input="hi", previous_response_id="resp_nope")
    assert info.value.body["param"] == "previous_response_id"  # type: ignore[index]
    assert info.value.body["code"] == "previous_response_not_found"  # type: ignore[index]


def test_parallel_calls_are_streamed_one_item_after_another(client: openai.OpenAI) -> None:
    tools = [
        WEATHER_TOOL,
        {"type": "function", "name": "get_time", "parameters": {"type": "object"}},
    ]
    with client.responses.create(
        model="demo",
        input='[[call:get_weather {"city": "Rome"}]] [[call:get_time]]',
        tools=tools,  # type: ignore[arg-type]
        stream=True,
    ) as stream:
        events = list(stream)

    boundaries = [
        (e.type, e.output_index)
        for e in events
        if e.type in ("response.output_item.added", "response.output_item.done")
    ]
    assert boundaries == [
        ("response.output_item.added", 0),
        ("response.output_item.done", 0),
        ("response.output_item.added", 1),
        ("response.output_item.done", 1),
    ]
    final = events[-1].response
    assert [item.name for item in final.output] == ["get_weather", "get_time"]  # type: ignore[union-attr]
    assert len({item.call_id for item in final.output}) == 2  # type: ignore[union-attr]


def test_wall_clock_limit_fails_the_response_with_timeout(
    make_settings: Callable[..., Settings],
) -> None:
    with running_api(make_settings(response_timeout_s=0.5)) as url, sdk_client(url) as sdk:
        response = sdk.responses.create(model="demo", input="a b c d e f [[delay:200]]")
    assert response.status == "failed"
    assert response.error is not None
    assert response.error.code == "timeout"
