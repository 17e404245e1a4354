"""The UpstreamClient on its own: reading the SSE wire format (or a plain JSON completion),
the error messages it builds, and the delays between tries."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from app.engine.chat.client import UpstreamClient, UpstreamError
from tests.unit.harness import unit_settings
from tests.unit.upstream import (
    DONE,
    Reply,
    ScriptedUpstream,
    TokenUsage,
    chunk,
    json_reply,
    sse,
    status,
    text_reply,
)


async def chunks_of(client: UpstreamClient) -> list[dict[str, Any]]:
    return [c async for c in client.stream_chat({"model": "m", "messages": []})]


async def client_for(upstream: ScriptedUpstream, **settings: Any) -> AsyncIterator[UpstreamClient]:
    client = UpstreamClient(
        unit_settings(**settings), transport=httpx.MockTransport(upstream.handler)
    )
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def client(upstream: ScriptedUpstream) -> AsyncIterator[UpstreamClient]:
    async for c in client_for(upstream):
        yield c


async def test_only_data_lines_carry_chunks(
    client: UpstreamClient, upstream: ScriptedUpstream
) -> None:
    first, second = chunk({"content": "a"}), chunk({"content": "b"})
    upstream.then(
        Reply(
            [
                b": keep-alive\n\n",
                b"event: message\n" + sse(first),
                b"data:\n\n",  # an empty data line says nothing
                b"data:" + sse(second)[5:].lstrip(),  # no space after the colon
                DONE,
                sse(chunk({"content": "after the end"})),
            ]
        )
    )

    assert await chunks_of(client) == [first, second]


async def test_lines_cut_across_blocks_and_crlf_line_ends_are_read_whole(
    client: UpstreamClient, upstream: ScriptedUpstream
) -> None:
    first, second = chunk({"content": "é€"}), chunk({"content": "b"})
    raw_utf8 = json.dumps(first, ensure_ascii=False).encode()
    wire = b"data: " + raw_utf8 + b"\r\n\r\n" + sse(second)
    # Cut inside the JSON and inside a multi-byte character.
    cut = wire.index("€".encode()) + 1
    upstream.then(Reply([wire[:7], wire[7:cut], wire[cut:], DONE]))

    assert await chunks_of(client) == [first, second]


async def test_a_non_finite_logprob_is_read_and_a_lone_surrogate_is_not(
    client: UpstreamClient, upstream: ScriptedUpstream
) -> None:
    # What Python's json module writes for -inf, and for a half of a surrogate pair.
    with_infinity = b'data: {"choices": [{"index": 0, "delta": {"content": "a"}, "logprobs":'
    with_infinity += b' {"content": [{"token": "a", "logprob": -Infinity}]}}]}\n\n'
    upstream.then(Reply([with_infinity, DONE]))
    [read] = await chunks_of(client)
    assert read["choices"][0]["logprobs"]["content"][0]["logprob"] == -9999.0

    upstream.then(
        Reply([b'data: {"choices": [{"index": 0, "delta": {"content": "\\ud83d"}}]}\n\n'])
    )
    with pytest.raises(UpstreamError, match="malformed chunk"):
        await chunks_of(client)


async def test_the_request_is_a_streaming_post_with_the_key(upstream: ScriptedUpstream) -> None:
    seen: list[httpx.Request] = []
    upstream.then(text_reply("ok"))

    async def recording(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return await upstream.handler(request)

    client = UpstreamClient(
        unit_settings(upstream_api_key="sk-upstream"),
        transport=httpx.MockTransport(recording),
    )
    try:
        await chunks_of(client)
    finally:
        await client.aclose()

    [request] = seen
    assert request.headers["authorization"] == "Bearer sk-upstream"
    assert request.headers["accept"] == "text/event-stream"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"error": {"message": "no such model"}}', "upstream returned 404: no such model"),
        (b'{"error": "plain words"}', "upstream returned 404: plain words"),
        (b"<html>Not Found</html>", "upstream returned 404: <html>Not Found</html>"),
        (b"", "upstream returned 404"),
    ],
)
async def test_an_error_status_names_what_the_upstream_said(
    client: UpstreamClient, upstream: ScriptedUpstream, body: bytes, message: str
) -> None:
    upstream.then(Reply([body], status=404))

    with pytest.raises(UpstreamError) as info:
        await chunks_of(client)

    assert info.value.message == message
    assert info.value.status_code == 404
    assert len(upstream.requests) == 1


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (
            b'{"error": {"message": "no such model", "code": "model_not_found", "param": "model"}}',
            ("no such model", "model_not_found", "model"),
        ),
        # vLLM: the fields at the top level, the code a number.
        (
            b'{"object": "error", "message": "no such model", "type": "NotFoundError", '
            b'"param": null, "code": 404}',
            ("no such model", None, None),
        ),
        (b'{"detail": "Not Found"}', ("Not Found", None, None)),
        (b"", ("upstream returned 404", None, None)),
    ],
    ids=["openai", "vllm", "fastapi", "empty"],
)
async def test_an_error_status_keeps_the_upstreams_own_words_as_its_refusal(
    client: UpstreamClient, upstream: ScriptedUpstream, body: bytes, said: tuple[str, ...]
) -> None:
    upstream.then(Reply([body], status=404, headers={"retry-after": "3"}))

    with pytest.raises(UpstreamError) as info:
        await chunks_of(client)

    refusal = info.value.refusal
    assert refusal is not None
    assert (refusal["message"], refusal["code"], refusal["param"]) == said
    assert (refusal["status"], refusal["retry_after_s"]) == (404, 3.0)


@pytest.mark.parametrize("code", [401, 403])
async def test_rejected_credentials_are_told_in_ferrys_words(
    client: UpstreamClient, upstream: ScriptedUpstream, code: int
) -> None:
    upstream.then(status(code, "Incorrect API key provided: sk-abc123"))

    with pytest.raises(UpstreamError) as info:
        await chunks_of(client)

    error = info.value
    assert error.code == "upstream_auth_failed"
    assert error.refusal is not None
    assert error.refusal["code"] == "upstream_auth_failed"
    for said in (error.message, error.refusal["message"]):
        assert "sk-abc123" not in said
        assert f"rejected Ferry's credentials (HTTP {code})" in said
    assert len(upstream.requests) == 1


async def retry_delays(
    upstream: ScriptedUpstream, caplog: pytest.LogCaptureFixture, **settings: Any
) -> list[float]:
    with caplog.at_level(logging.WARNING, logger="app.engine.chat.client"):
        async for client in client_for(upstream, **settings):
            await chunks_of(client)
    return [vars(r)["delay_s"] for r in caplog.records if r.name == "app.engine.chat.client"]


async def test_retry_after_is_capped_at_the_longest_backoff(
    upstream: ScriptedUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.then(status(503, retry_after="30"), text_reply("ok"))

    delays = await retry_delays(upstream, caplog, upstream_backoff_max_s=0.01)

    assert delays == [0.01]


async def test_retry_after_as_a_date_in_the_past_means_now(
    upstream: ScriptedUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    past = format_datetime(datetime.now(UTC) - timedelta(minutes=5), usegmt=True)
    upstream.then(status(429, retry_after=past), text_reply("ok"))

    delays = await retry_delays(
        upstream, caplog, upstream_backoff_base_s=0.5, upstream_backoff_max_s=1.0
    )

    assert delays == [0.0]


@pytest.mark.parametrize("unusable", ["soon", "nan", "inf"])
async def test_an_unusable_retry_after_falls_back_to_the_backoff(
    upstream: ScriptedUpstream, caplog: pytest.LogCaptureFixture, unusable: str
) -> None:
    upstream.then(status(503, retry_after=unusable), text_reply("ok"))

    [delay] = await retry_delays(
        upstream, caplog, upstream_backoff_base_s=0.004, upstream_backoff_max_s=0.004
    )

    assert 0.0 <= delay <= 0.004


async def test_a_plain_json_completion_is_one_chunk_of_all_of_it(
    client: UpstreamClient, upstream: ScriptedUpstream
) -> None:
    calls = [
        {"id": f"call_{n}", "type": "function", "function": {"name": n, "arguments": "{}"}}
        for n in ("a", "b")
    ]
    message = {
        "role": "assistant",
        "reasoning_content": "Two tools.",
        "content": "Calling.",
        "tool_calls": calls,
    }
    usage = TokenUsage(7, 5, reasoning_tokens=2)
    upstream.then(json_reply(message, finish_reason="tool_calls", usage=usage))

    [whole] = await chunks_of(client)

    assert whole["object"] == "chat.completion.chunk"
    assert whole["usage"] == usage.chat()
    [choice] = whole["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["delta"] == {
        **message,
        # A message's calls carry no index; a stream would number them by position.
        "tool_calls": [{**calls[0], "index": 0}, {**calls[1], "index": 1}],
    }


async def test_an_empty_json_body_is_no_chunk(
    client: UpstreamClient, upstream: ScriptedUpstream
) -> None:
    upstream.then(Reply([b""], headers={"content-type": "application/json; charset=utf-8"}))

    assert await chunks_of(client) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"error": {"message": "overloaded"}}', "upstream error: overloaded"),
        (b'{"id": "chatcmpl-1", "choi', "upstream sent a malformed completion: "),
        (b"[1, 2]", "upstream sent a malformed completion: "),
    ],
)
async def test_a_json_body_that_is_no_completion_is_an_upstream_error(
    client: UpstreamClient, upstream: ScriptedUpstream, body: bytes, message: str
) -> None:
    upstream.then(Reply([body], headers={"content-type": "application/json"}))

    with pytest.raises(UpstreamError) as info:
        await chunks_of(client)

    assert info.value.message.startswith(message)
    assert len(upstream.requests) == 1
