"""The fake upstream, in process: its replies, directives, faults and request spy over httpx.

Timing (chunk spacing, a client hanging up) needs a real server: tests/e2e/test_fake_upstream.py.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tests.fakes.upstream import (
    MAX_RECORDED_REQUESTS,
    create_app,
    parse_directives,
    split_directives,
)

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    },
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
]


# --------------------------------------------------------------------------- harness


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """A fresh fake (empty request log, no fail-first counts), called in process."""
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://fake") as http:
        yield http


def parse_sse(raw: str) -> list[str]:
    """The ``data:`` payloads of an SSE body, checking the framing is exactly OpenAI's."""
    if not raw:
        return []
    assert raw.endswith("\n\n"), raw[-40:]
    payloads = []
    for event in raw[:-2].split("\n\n"):
        assert event.startswith("data: "), event
        assert "\n" not in event, event
        payloads.append(event.removeprefix("data: "))
    return payloads


async def stream(
    client: httpx.AsyncClient, payload: dict[str, Any], path: str = "/chat/completions"
) -> tuple[httpx.Response, list[str]]:
    async with client.stream("POST", path, json={**payload, "stream": True}) as response:
        raw = (await response.aread()).decode()
    return response, parse_sse(raw)


def chunks_of(payloads: list[str]) -> list[dict[str, Any]]:
    return [json.loads(payload) for payload in payloads if payload != "[DONE]"]


def content_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(
        choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"]
    )


def finish_reasons(chunks: list[dict[str, Any]]) -> list[str]:
    return [
        choice["finish_reason"]
        for chunk in chunks
        for choice in chunk["choices"]
        if choice["finish_reason"] is not None
    ]


def assemble_tool_calls(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            for part in choice["delta"].get("tool_calls", []):
                entry = calls.setdefault(part["index"], {"arguments": ""})
                if "id" in part:
                    entry["id"] = part["id"]
                    entry["type"] = part["type"]
                    entry["name"] = part["function"]["name"]
                entry["arguments"] += part["function"]["arguments"]
    return [calls[index] for index in sorted(calls)]


def user(text: Any, **extra: Any) -> dict[str, Any]:
    return {"model": "demo-model-x", "messages": [{"role": "user", "content": text}], **extra}


def expected_call_id(text: str, index: int) -> str:
    return "call_" + hashlib.sha256(f"{text}{index}".encode()).hexdigest()[:24]


# --------------------------------------------------------------------------- basics


@pytest.mark.parametrize("path", ["/models", "/v1/models"])
async def test_models_lists_the_demo_models(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert [model["id"] for model in body["data"]] == ["demo", "demo-small"]
    assert body["data"][0]["object"] == "model"
    assert "max_model_len" not in body["data"][0]
    assert body["data"][1]["max_model_len"] == 60


async def test_tokenize_counts_the_words_of_the_messages(client: httpx.AsyncClient) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Count  these three"},
    ]
    response = await client.post("/tokenize", json={"model": "demo-small", "messages": messages})
    assert response.status_code == 200
    assert response.json()["count"] == 5
    assert response.json()["max_model_len"] == 60
    refused = await client.post("/tokenize", json={"model": "demo", "messages": "none"})
    assert refused.status_code == 400


async def test_text_stream_matches_openai_wire_format(client: httpx.AsyncClient) -> None:
    response, payloads = await stream(client, user("  Hi   there [[unknown-thing]] friend "))

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert payloads[-1] == "[DONE]"
    chunks = chunks_of(payloads)
    tokens = ["Hello! ", "You ", "said: ", "Hi ", "there ", "friend"]
    # One chunk per token, then the finish chunk; no usage chunk because it wasn't asked for.
    assert len(chunks) == len(tokens) + 1
    assert [c["choices"][0]["delta"] for c in chunks[:2]] == [
        {"role": "assistant", "content": "Hello! "},
        {"content": "You "},
    ]
    assert [c["choices"][0]["delta"].get("content") for c in chunks[:-1]] == tokens
    assert content_of(chunks) == "Hello! You said: Hi there friend"
    finish = chunks[-1]["choices"][0]
    assert finish == {"index": 0, "delta": {}, "finish_reason": "stop", "logprobs": None}
    for chunk in chunks:
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["model"] == "demo-model-x"
        assert isinstance(chunk["created"], int)
        assert "usage" not in chunk
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[0]["id"].startswith("chatcmpl-")
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])


async def test_stream_usage_chunk_when_requested(client: httpx.AsyncClient) -> None:
    payload = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "one two"},
        ],
        "stream_options": {"include_usage": True},
    }
    _, payloads = await stream(client, payload)

    assert payloads[-1] == "[DONE]"
    chunks = chunks_of(payloads)
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {
        "prompt_tokens": 5,
        "completion_tokens": 5,  # "Hello! You said: one two"
        "total_tokens": 10,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    assert finish_reasons(chunks) == ["stop"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


async def test_non_streaming_completion_on_v1_path(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json=user("ping"))

    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "demo-model-x"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "Hello! You said: ping"
    assert choice["finish_reason"] == "stop"
    assert body["usage"]["prompt_tokens"] == 1
    assert body["usage"]["completion_tokens"] == 4
    assert body["usage"]["total_tokens"] == 5


async def test_logprobs_stream_with_each_token_when_asked(client: httpx.AsyncClient) -> None:
    _, payloads = await stream(client, user("a bé", logprobs=True, top_logprobs=2))

    chunks = chunks_of(payloads)
    for chunk in chunks:  # exactly the chat-completions shape the SDK reads
        assert ChatCompletionChunk.model_validate(chunk).to_dict() == chunk
    *text_chunks, finish = chunks
    for chunk in text_chunks:
        [choice] = chunk["choices"]
        [entry] = choice["logprobs"]["content"]
        token = choice["delta"]["content"]
        assert (entry["token"], entry["bytes"]) == (token, list(token.encode()))
        assert [top["token"] for top in entry["top_logprobs"]][:1] == [token]
        assert len(entry["top_logprobs"]) == 2
        assert entry["top_logprobs"][0]["logprob"] == entry["logprob"]
        assert entry["top_logprobs"][1]["logprob"] < entry["logprob"]
    assert finish["choices"][0]["logprobs"] == {"content": [], "refusal": None}


async def test_logprobs_of_a_blocking_completion_cover_its_content(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/chat/completions", json=user("ping", logprobs=True))

    body = response.json()
    ChatCompletion.model_validate(body)
    [choice] = body["choices"]
    tokens = choice["logprobs"]["content"]
    assert "".join(t["token"] for t in tokens) == choice["message"]["content"]
    assert all(t["top_logprobs"] == [] for t in tokens)  # no top_logprobs asked for


@pytest.mark.parametrize(
    "fields",
    [
        {"top_logprobs": 3},  # needs logprobs: true
        {"logprobs": True, "top_logprobs": 21},
        {"logprobs": True, "top_logprobs": -1},
        {"logprobs": "yes"},
    ],
)
async def test_bad_logprobs_parameters_are_400(
    client: httpx.AsyncClient, fields: dict[str, Any]
) -> None:
    response = await client.post("/chat/completions", json=user("hi", **fields))

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_content_parts_use_only_text(client: httpx.AsyncClient) -> None:
    parts = [
        {"type": "text", "text": "look at"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "text", "text": "this   picture"},
    ]
    response = await client.post("/chat/completions", json=user(parts))

    body = response.json()
    assert body["choices"][0]["message"]["content"] == "Hello! You said: look at this picture"
    assert body["usage"]["prompt_tokens"] == 4


@pytest.mark.parametrize("limit_field", ["max_tokens", "max_completion_tokens"])
async def test_token_limit_truncates_with_length(
    client: httpx.AsyncClient, limit_field: str
) -> None:
    payload = user("a b c d e", **{limit_field: 3}, stream_options={"include_usage": True})
    _, payloads = await stream(client, payload)

    chunks = chunks_of(payloads)
    assert content_of(chunks) == "Hello! You said: "
    assert finish_reasons(chunks) == ["length"]
    assert chunks[-1]["usage"]["completion_tokens"] == 3


async def test_token_limit_not_reached_is_stop(client: httpx.AsyncClient) -> None:
    response = await client.post("/chat/completions", json=user("hi", max_tokens=50))

    body = response.json()
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["choices"][0]["message"]["content"] == "Hello! You said: hi"


@pytest.mark.parametrize(
    ("role", "content"), [("system", "be nice"), ("assistant", "earlier answer")]
)
async def test_non_user_last_message_says_hello(
    client: httpx.AsyncClient, role: str, content: str
) -> None:
    payload = {"model": "m", "messages": [{"role": role, "content": content}]}
    response = await client.post("/chat/completions", json=payload)

    assert response.json()["choices"][0]["message"]["content"] == "Hello!"


# --------------------------------------------------------------------------- tool calls


async def test_tool_call_directives_stream_calls(client: httpx.AsyncClient) -> None:
    text = 'Weather? [[call:get_weather {"city": "Paris"}]] and [[call:get_time]]'
    payload = user(text, tools=TOOLS, stream_options={"include_usage": True})
    _, payloads = await stream(client, payload)

    chunks = chunks_of(payloads)
    calls = assemble_tool_calls(chunks)
    assert calls == [
        {
            "id": expected_call_id(text, 0),
            "type": "function",
            "name": "get_weather",
            "arguments": json.dumps({"city": "Paris"}),
        },
        {
            "id": expected_call_id(text, 1),
            "type": "function",
            "name": "get_time",
            "arguments": "{}",
        },
    ]
    assert finish_reasons(chunks) == ["tool_calls"]
    assert content_of(chunks) == ""

    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    first = deltas[0]
    assert first["role"] == "assistant"
    assert first["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": ""}
    pieces = [
        d["tool_calls"][0]["function"]["arguments"]
        for d in deltas
        if "tool_calls" in d and "id" not in d["tool_calls"][0]
    ]
    assert pieces, "arguments should arrive in follow-up chunks"
    assert all(0 < len(piece) <= 8 for piece in pieces)
    # '{"city": "Paris"}' is 17 characters -> three pieces; "{}" -> one.
    assert len(pieces) == 4
    # Every streamed chunk counts as a completion token: 2 headers + 4 pieces.
    assert chunks[-1]["usage"]["completion_tokens"] == 6


async def test_tool_call_non_streaming(client: httpx.AsyncClient) -> None:
    text = '[[call:get_weather {"city": "Oslo"}]]'
    response = await client.post("/chat/completions", json=user(text, tools=TOOLS))

    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {
            "id": expected_call_id(text, 0),
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
        }
    ]


async def test_call_to_unknown_tool_is_ignored(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/chat/completions", json=user("go [[call:launch_rockets]]", tools=TOOLS)
    )

    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["content"] == "Hello! You said: go"
    assert "tool_calls" not in choice["message"]


async def test_tool_choice_none_and_missing_tools_give_text(client: httpx.AsyncClient) -> None:
    text = "x [[call:get_time]]"
    no_choice = await client.post(
        "/chat/completions", json=user(text, tools=TOOLS, tool_choice="none")
    )
    no_tools = await client.post("/chat/completions", json=user(text))

    for response in (no_choice, no_tools):
        choice = response.json()["choices"][0]
        assert choice["finish_reason"] == "stop"
        assert choice["message"]["content"] == "Hello! You said: x"


async def test_tool_choice_forces_a_call(client: httpx.AsyncClient) -> None:
    required = await client.post(
        "/chat/completions", json=user("anything", tools=TOOLS, tool_choice="required")
    )
    named = await client.post(
        "/chat/completions",
        json=user(
            "anything",
            tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "get_time"}},
        ),
    )

    required_calls = required.json()["choices"][0]["message"]["tool_calls"]
    named_calls = named.json()["choices"][0]["message"]["tool_calls"]
    assert [(c["function"]["name"], c["function"]["arguments"]) for c in required_calls] == [
        ("get_weather", "{}")
    ]
    assert [(c["function"]["name"], c["function"]["arguments"]) for c in named_calls] == [
        ("get_time", "{}")
    ]


async def test_tool_results_are_summarised(client: httpx.AsyncClient) -> None:
    payload = {
        "model": "m",
        "tools": TOOLS,
        "messages": [
            {"role": "user", "content": "[[call:get_weather {}]] [[call:get_time]]"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": "{}"},
                    },
                    {
                        "id": "call_b",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": "{}"},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
            {
                "role": "tool",
                "tool_call_id": "call_b",
                "content": [{"type": "text", "text": "noon"}],
            },
            {"role": "tool", "tool_call_id": "call_zzz", "content": "orphan"},
        ],
    }
    _, payloads = await stream(client, payload)

    chunks = chunks_of(payloads)
    # The call directives in the earlier user turn must not fire again after the results.
    assert content_of(chunks) == "Tool results: get_weather=sunny; get_time=noon; call_zzz=orphan"
    assert finish_reasons(chunks) == ["stop"]


def test_directive_parsing_handles_brackets_inside_json() -> None:
    visible, bodies = split_directives('a [[call:f {"m": [[1, 2]], "s": "]]"}]]b [[cut]] [[oops')
    directives = parse_directives(bodies)

    assert visible == "a b [[oops"
    assert directives.calls == [("f", {"m": [[1, 2]], "s": "]]"})]
    assert directives.cut is True
    assert parse_directives(["call:f [1]", "status:abc", "delay:-5"]).calls == []
    assert parse_directives(["status:abc"]).status is None


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize("code", [400, 429, 500, 503])
async def test_status_directive(client: httpx.AsyncClient, code: int) -> None:
    response = await client.post(
        "/chat/completions", json=user(f"please fail [[status:{code}]]", stream=True)
    )

    assert response.status_code == code
    assert response.json() == {
        "error": {
            "message": f"demo upstream error {code}",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }


async def test_status_directive_takes_a_message_a_code_and_a_retry_after(
    client: httpx.AsyncClient,
) -> None:
    text = (
        "no such model [[status:404]] [[error-message:The model `x` does not exist: check it]]"
        " [[error-code:model_not_found]] [[retry-after:7]]"
    )
    response = await client.post("/chat/completions", json=user(text, stream=True))

    assert response.status_code == 404
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"] == {
        "message": "The model `x` does not exist: check it",
        "type": "server_error",
        "param": None,
        "code": "model_not_found",
    }


async def test_cut_ends_stream_after_half(client: httpx.AsyncClient) -> None:
    payload = user("a b c d e f g [[cut]]", stream_options={"include_usage": True})
    response, payloads = await stream(client, payload)

    assert response.status_code == 200
    assert "[DONE]" not in payloads
    chunks = chunks_of(payloads)
    # 10 tokens ("Hello! You said: a ... g") -> the first 5, nothing else.
    assert content_of(chunks) == "Hello! You said: a b "
    assert finish_reasons(chunks) == []
    assert all("usage" not in chunk for chunk in chunks)


async def test_empty_directive_sends_empty_body(client: httpx.AsyncClient) -> None:
    async with client.stream("POST", "/chat/completions", json=user("[[empty]]", stream=True)) as r:
        raw = await r.aread()

    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert raw == b""


async def test_mid_error_sends_error_then_ends(client: httpx.AsyncClient) -> None:
    _, payloads = await stream(client, user("one two three four [[mid-error]]"))

    assert "[DONE]" not in payloads
    *content, last = [json.loads(payload) for payload in payloads]
    assert last == {
        "error": {
            "message": "demo upstream failed mid-stream",
            "type": "server_error",
            "code": "upstream_error",
        }
    }
    # 7 tokens -> 3 streamed before the failure.
    assert content_of(content) == "Hello! You said: "
    assert finish_reasons(content) == []


async def test_no_usage_directive(client: httpx.AsyncClient) -> None:
    payload = user("hi [[no-usage]]", stream_options={"include_usage": True})
    _, payloads = await stream(client, payload)
    plain = await client.post("/chat/completions", json=user("hi [[no-usage]]"))

    chunks = chunks_of(payloads)
    assert payloads[-1] == "[DONE]"
    assert content_of(chunks) == "Hello! You said: hi"
    assert all("usage" not in chunk and chunk["choices"] for chunk in chunks)
    assert "usage" not in plain.json()


async def test_anthropic_usage_directive(client: httpx.AsyncClient) -> None:
    payload = user("hi [[anthropic-usage]]", stream_options={"include_usage": True})
    _, payloads = await stream(client, payload)

    usage_chunk = chunks_of(payloads)[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {
        "input_tokens": 2,
        "output_tokens": 4,
        "cache_read_input_tokens": 3,
        "cache_creation_input_tokens": 2,
    }


async def test_reasoning_directive_usage_details(client: httpx.AsyncClient) -> None:
    response = await client.post("/chat/completions", json=user("think [[reasoning]]"))

    usage = response.json()["usage"]
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 5}
    assert usage["prompt_tokens_details"] == {"cached_tokens": 2}
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def deltas_of(chunks: list[dict[str, Any]], key: str) -> list[str]:
    deltas = [choice["delta"] for chunk in chunks for choice in chunk["choices"]]
    return [delta[key] for delta in deltas if key in delta]


@pytest.mark.parametrize("key", ["reasoning_content", "reasoning"])
async def test_think_directive_streams_reasoning_first_in_either_field(
    client: httpx.AsyncClient, key: str
) -> None:
    directive = "[[think]]" if key == "reasoning_content" else "[[think:reasoning]]"
    payload = user(f"hi there {directive}", stream_options={"include_usage": True})
    _, payloads = await stream(client, payload)
    blocking = (await client.post("/chat/completions", json=user(f"hi there {directive}"))).json()

    chunks = chunks_of(payloads)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", key: "Thinking "}
    assert "".join(deltas_of(chunks, key)) == "Thinking about: hi there"
    other = "reasoning" if key == "reasoning_content" else "reasoning_content"
    assert deltas_of(chunks, other) == []
    assert content_of(chunks) == "Hello! You said: hi there"
    assert all("role" not in choice["delta"] for c in chunks[1:] for choice in c["choices"])
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 4}
    assert usage["completion_tokens"] == 4 + 5
    message = blocking["choices"][0]["message"]
    assert (message[key], message["content"]) == (
        "Thinking about: hi there",
        "Hello! You said: hi there",
    )
    assert blocking["usage"] == usage


async def test_think_tags_directive_puts_split_tags_in_the_content(
    client: httpx.AsyncClient,
) -> None:
    _, payloads = await stream(client, user("hi [[think:tags]]"))
    blocking = (await client.post("/chat/completions", json=user("hi [[think:tags]]"))).json()

    chunks = chunks_of(payloads)
    pieces = deltas_of(chunks, "content")
    assert pieces[:2] == ["<th", "ink>"]
    assert "</think>" not in pieces  # split too
    text = "<think>Thinking about: hi</think>\n\nHello! You said: hi"
    assert "".join(pieces) == text
    assert blocking["choices"][0]["message"]["content"] == text
    assert blocking["usage"]["completion_tokens_details"] == {"reasoning_tokens": 0}


async def test_think_directive_thinks_before_calls_and_after_tool_results(
    client: httpx.AsyncClient,
) -> None:
    text = "[[call:get_time]] [[think]]"
    _, payloads = await stream(client, user(text, tools=TOOLS))
    chunks = chunks_of(payloads)
    first_call = next(n for n, c in enumerate(chunks) if "tool_calls" in c["choices"][0]["delta"])
    assert "".join(deltas_of(chunks[:first_call], "reasoning_content")) == "Thinking about: "
    assert assemble_tool_calls(chunks)[0]["name"] == "get_time"

    call = {"id": "c1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": text},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "noon"},
    ]
    _, payloads = await stream(client, {"model": "m", "messages": messages, "tools": TOOLS})
    thought = "".join(deltas_of(chunks_of(payloads), "reasoning_content"))
    assert thought == "Thinking about the tool results."


async def test_no_stream_directive_answers_a_stream_request_with_json(
    client: httpx.AsyncClient,
) -> None:
    payload = user("plain [[no-stream]] [[think]]", stream=True)
    response = await client.post("/chat/completions", json=payload)

    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["object"] == "chat.completion"
    message = body["choices"][0]["message"]
    assert message["reasoning_content"] == "Thinking about: plain"
    assert message["content"] == "Hello! You said: plain"


def test_think_directive_styles() -> None:
    assert parse_directives(["think"]).think == "reasoning_content"
    assert parse_directives(["think: reasoning"]).think == "reasoning"
    assert parse_directives(["think:TAGS"]).think == "tags"
    assert parse_directives(["think:loudly"]).think is None


# --------------------------------------------------------------------------- validation


async def test_invalid_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert set(error) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    "body",
    [{"model": "m"}, {"model": "m", "messages": []}, {"model": "m", "messages": "hi"}],
)
async def test_missing_messages_is_400(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    response = await client.post("/chat/completions", json=body)

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


# --------------------------------------------------------------------------- request log


async def test_request_log_records_and_clears(client: httpx.AsyncClient) -> None:
    await client.delete("/_demo/requests")
    await client.post(
        "/chat/completions", json=user("first"), headers={"Authorization": "Bearer sk-demo"}
    )
    await client.post("/v1/chat/completions", json=user("second", stream=True))

    recorded = (await client.get("/_demo/requests")).json()
    peer = recorded[0]["peer"]  # the test client's end of its connection
    assert peer.startswith("127.0.0.1:")
    assert recorded == [
        {
            "headers": {"authorization": "Bearer sk-demo"},
            "body": user("first"),
            "stream": None,
            "peer": peer,
        },
        {
            "headers": {"authorization": None},
            "body": user("second", stream=True),
            "stream": "finished",
            "peer": peer,
        },
    ]

    cleared = await client.delete("/_demo/requests")
    assert cleared.status_code == 200
    assert (await client.get("/_demo/requests")).json() == []


async def test_request_log_keeps_only_the_latest(client: httpx.AsyncClient) -> None:
    await client.delete("/_demo/requests")
    total = MAX_RECORDED_REQUESTS + 5
    for n in range(total):
        await client.post("/chat/completions", json=user(f"n{n}"))

    recorded = (await client.get("/_demo/requests")).json()
    assert len(recorded) == MAX_RECORDED_REQUESTS
    first_text = recorded[0]["body"]["messages"][0]["content"]
    last_text = recorded[-1]["body"]["messages"][0]["content"]
    assert (first_text, last_text) == ("n5", f"n{total - 1}")
    await client.delete("/_demo/requests")


# --------------------------------------------------------------------------- fail-first


async def test_fail_first_fails_the_same_text_n_times_then_answers(
    client: httpx.AsyncClient,
) -> None:
    marker = secrets.token_hex(8)
    failing = user(f"flaky {marker} [[fail-first:2:429]] [[retry-after:1.5]]", stream=True)
    # Directives are not part of the key: the same visible text counts as the same prompt.
    moved = user(f"[[retry-after:1.5]] flaky [[fail-first:2:429]] {marker}", stream=True)

    first = await client.post("/chat/completions", json=failing)
    second = await client.post("/chat/completions", json=moved)
    third, payloads = await stream(client, failing)
    default_code = await client.post(
        "/chat/completions", json=user(f"other {marker} [[fail-first:1]]")
    )

    for response in (first, second):
        assert response.status_code == 429
        assert response.headers["retry-after"] == "1.5"
        assert response.json()["error"]["message"] == "demo upstream error 429"
    assert third.status_code == 200
    assert content_of(chunks_of(payloads)) == f"Hello! You said: flaky {marker}"
    assert default_code.status_code == 503
    assert "retry-after" not in default_code.headers
