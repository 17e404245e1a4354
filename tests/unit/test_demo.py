"""The demo upstream (`python -m app.demo`), in process: what someone trying Ferry sees."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from app.demo.upstream import THOUGHT, create_app

WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object"}},
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}


@pytest.fixture
async def demo() -> AsyncIterator[httpx.AsyncClient]:
    # No pacing: the words still come as separate chunks, only without the pause between.
    transport = httpx.ASGITransport(app=create_app(pace_s=0))
    async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
        yield client


def asked(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "demo", "messages": [{"role": "user", "content": text}], **extra}


async def streamed(demo: httpx.AsyncClient, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The chunks of a streamed completion, checking the SSE framing is OpenAI's."""
    response = await demo.post("/v1/chat/completions", json={**body, "stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = response.text.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    assert all(event.startswith("data: ") for event in events[:-1])
    return [json.loads(event.removeprefix("data: ")) for event in events[:-2]]


def deltas(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [choice["delta"] for chunk in chunks for choice in chunk["choices"]]


@pytest.mark.parametrize("path", ["/models", "/v1/models"])
async def test_models_lists_the_demo_model(demo: httpx.AsyncClient, path: str) -> None:
    reply = await demo.get(path)
    assert reply.status_code == 200
    assert [model["id"] for model in reply.json()["data"]] == ["demo"]
    assert reply.json()["data"][0]["max_model_len"] == 8192


async def test_echo_streams_word_by_word_then_usage(demo: httpx.AsyncClient) -> None:
    chunks = await streamed(demo, asked("Say   hello", stream_options={"include_usage": True}))

    words = ["Hello! ", "You ", "said: ", "Say ", "hello"]
    assert deltas(chunks)[0] == {"role": "assistant", "content": "Hello! "}
    assert [delta.get("content") for delta in deltas(chunks)] == [*words, None]
    assert chunks[-2]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 2,
        "completion_tokens": 5,
        "total_tokens": 7,
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk["id"] for chunk in chunks}) == 1


async def test_usage_is_streamed_only_when_asked_for(demo: httpx.AsyncClient) -> None:
    chunks = await streamed(demo, asked("hi"))
    assert all("usage" not in chunk for chunk in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_echo_without_streaming_is_one_json_completion(demo: httpx.AsyncClient) -> None:
    parts = [{"type": "text", "text": "look at"}, {"type": "image_url", "image_url": {"url": "x"}}]
    reply = await demo.post("/chat/completions", json=asked(parts))  # type: ignore[arg-type]

    body = reply.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Hello! You said: look at",
    }
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 5


async def test_logprobs_come_with_each_word_when_asked(demo: httpx.AsyncClient) -> None:
    body = asked("Say hi", logprobs=True, top_logprobs=3)
    chunks = await streamed(demo, body)
    again = await streamed(demo, body)
    blocking = (await demo.post("/chat/completions", json=body)).json()

    words = [d["content"] for d in deltas(chunks) if d.get("content")]
    entries = []
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
        for choice in chunk["choices"]:
            entries += (choice.get("logprobs") or {}).get("content") or []
    assert [e["token"] for e in entries] == words
    assert all(e["bytes"] == list(e["token"].encode()) for e in entries)
    assert all(-2 <= e["logprob"] <= 0 for e in entries)
    assert all([t["token"] for t in e["top_logprobs"]][:1] == [e["token"]] for e in entries)
    assert {len(e["top_logprobs"]) for e in entries} == {3}
    assert again == chunks  # steady: the same words get the same numbers
    ChatCompletion.model_validate(blocking)
    assert blocking["choices"][0]["logprobs"]["content"] == entries


async def test_no_logprobs_unless_asked(demo: httpx.AsyncClient) -> None:
    chunks = await streamed(demo, asked("hi", top_logprobs=3))
    assert all("logprobs" not in choice for chunk in chunks for choice in chunk["choices"])


async def test_reasoning_effort_streams_reasoning_first(demo: httpx.AsyncClient) -> None:
    body = asked("think", reasoning_effort="low", stream_options={"include_usage": True})
    chunks = await streamed(demo, body)
    blocking = (await demo.post("/chat/completions", json=body)).json()

    assert deltas(chunks)[:2] == [
        {"role": "assistant", "reasoning_content": THOUGHT},
        {"content": "Hello! "},
    ]
    thought = len(THOUGHT.split())
    assert chunks[-1]["usage"]["completion_tokens_details"] == {"reasoning_tokens": thought}
    assert chunks[-1]["usage"]["completion_tokens"] == thought + 4  # "Hello! You said: think"
    assert blocking["choices"][0]["message"]["reasoning_content"] == THOUGHT
    assert blocking["usage"] == chunks[-1]["usage"]


async def test_a_model_named_for_reasoning_gets_the_reasoning_field(
    demo: httpx.AsyncClient,
) -> None:
    body = asked("think", reasoning_effort="low") | {"model": "demo-reasoning"}
    chunks = await streamed(demo, body)
    blocking = (await demo.post("/chat/completions", json=body)).json()

    assert deltas(chunks)[0] == {"role": "assistant", "reasoning": THOUGHT}
    assert not [delta for delta in deltas(chunks) if "reasoning_content" in delta]
    message = blocking["choices"][0]["message"]
    assert (message["reasoning"], "reasoning_content" in message) == (THOUGHT, False)


@pytest.mark.parametrize("extra", [{}, {"reasoning_effort": None}, {"reasoning_effort": "none"}])
async def test_no_reasoning_without_an_effort(
    demo: httpx.AsyncClient, extra: dict[str, Any]
) -> None:
    chunks = await streamed(demo, asked("hi", **extra))
    assert not [delta for delta in deltas(chunks) if "reasoning_content" in delta]


async def test_naming_an_offered_tool_calls_it_with_the_json_in_the_message(
    demo: httpx.AsyncClient,
) -> None:
    text = 'Weather? Use get_weather with {"city": "Paris"} please'
    chunks = await streamed(demo, asked(text, tools=[TIME, WEATHER]))
    blocking = await demo.post("/chat/completions", json=asked(text, tools=[TIME, WEATHER]))

    head, arguments, finish = deltas(chunks)
    [call] = blocking.json()["choices"][0]["message"]["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert head == {
        "role": "assistant",
        "tool_calls": [
            {
                "index": 0,
                "id": call["id"],
                "type": "function",
                "function": {"name": "get_weather", "arguments": ""},
            }
        ],
    }
    assert arguments == {
        "tool_calls": [{"index": 0, "function": {"arguments": call["function"]["arguments"]}}]
    }
    assert finish == {}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert blocking.json()["choices"][0]["message"]["content"] is None


@pytest.mark.parametrize(
    ("text", "name", "arguments"),
    [
        ("what is get_time", "get_time", {}),
        ("get_time or get_weather {not json} {}", "get_time", {}),  # the first named wins
        ('get_weather {"a": {"b": [1]}} then {"c": 2}', "get_weather", {"a": {"b": [1]}}),
    ],
)
async def test_which_tool_and_which_arguments(
    demo: httpx.AsyncClient, text: str, name: str, arguments: dict[str, Any]
) -> None:
    reply = await demo.post("/chat/completions", json=asked(text, tools=[WEATHER, TIME]))
    [call] = reply.json()["choices"][0]["message"]["tool_calls"]
    assert (call["function"]["name"], json.loads(call["function"]["arguments"])) == (
        name,
        arguments,
    )


@pytest.mark.parametrize(
    "extra",
    [
        {"tools": [WEATHER], "tool_choice": "none"},
        {"tools": [TIME]},  # named, but not offered
        {},
    ],
)
async def test_no_call_unless_an_offered_tool_is_named(
    demo: httpx.AsyncClient, extra: dict[str, Any]
) -> None:
    reply = await demo.post("/chat/completions", json=asked("call get_weather now", **extra))
    message = reply.json()["choices"][0]["message"]
    assert message["content"] == "Hello! You said: call get_weather now"
    assert "tool_calls" not in message


async def test_a_name_inside_another_word_is_not_a_call(demo: httpx.AsyncClient) -> None:
    reply = await demo.post("/chat/completions", json=asked("get_timers?", tools=[TIME]))
    assert "tool_calls" not in reply.json()["choices"][0]["message"]


async def test_told_to_call_the_first_tool_it_calls_it_unnamed() -> None:
    transport = httpx.ASGITransport(app=create_app(pace_s=0, call_first_tool=True))
    async with httpx.AsyncClient(transport=transport, base_url="http://demo") as demo:
        weather = asked('What is the weather in Oslo? {"city": "Oslo"}', tools=[WEATHER, TIME])
        reply = await demo.post("/chat/completions", json=weather)
        [call] = reply.json()["choices"][0]["message"]["tool_calls"]
        assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Oslo"}'}
        # A named tool still wins; no tools, `tool_choice: none` or a tool result: no call.
        named = await demo.post("/chat/completions", json=asked("get_time?", tools=[WEATHER, TIME]))
        [call] = named.json()["choices"][0]["message"]["tool_calls"]
        assert call["function"]["name"] == "get_time"
        for body in (asked("hi"), asked("hi", tools=[TIME], tool_choice="none")):
            message = (await demo.post("/chat/completions", json=body)).json()["choices"][0]
            assert "tool_calls" not in message["message"]


async def test_tool_results_are_answered(demo: httpx.AsyncClient) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": "get_time and get_weather"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "noon"},
        {"role": "tool", "tool_call_id": "call_2", "content": "sunny"},
    ]
    chunks = await streamed(demo, {"model": "demo", "messages": messages, "tools": [TIME]})
    text = "".join(delta.get("content") or "" for delta in deltas(chunks))
    assert text == "Tool results: noon; sunny"


async def test_equal_requests_get_equal_replies(demo: httpx.AsyncClient) -> None:
    body = asked('get_weather {"city": "Oslo"}', tools=[WEATHER], reasoning_effort="high")
    first, second = [await demo.post("/chat/completions", json=body) for _ in range(2)]
    assert first.content == second.content


@pytest.mark.parametrize(
    "raw", [b"{", b"[]", b"5", b'{"model": "demo"}', b'{"messages": []}', b'{"messages": "hi"}']
)
async def test_a_request_without_messages_is_400(demo: httpx.AsyncClient, raw: bytes) -> None:
    reply = await demo.post("/v1/chat/completions", content=raw)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "messages")
