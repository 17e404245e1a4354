"""The upstream client keeps its connection for the next request: a stream read to its
`[DONE]` is read to the end of its body, so its connection goes back to the pool rather
than being closed (a new connection for every model turn costs a connect before its first
token), while no more than UPSTREAM_KEEPALIVE_CONNECTIONS streams are open. Against the fake
upstream, a real HTTP server that notes each request's peer."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from app.config import Settings
from app.engine.chat.client import UpstreamClient
from tests.fakes.upstream.spy import requests_mentioning


async def stream_twice(settings: Settings, texts: list[str]) -> list[list[str]]:
    client = UpstreamClient(settings)
    try:
        answers = []
        for text in texts:
            body = {
                "model": "demo",
                "stream": True,
                "messages": [{"role": "user", "content": text}],
            }
            chunks = [chunk async for chunk in client.stream_chat(body)]
            answers.append(
                [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
            )
        return answers
    finally:
        await client.aclose()


@pytest.mark.parametrize("keepalive", [1, 0])
def test_a_stream_read_to_its_end_leaves_its_connection_for_the_next_request(
    upstream_url: str, keepalive: int
) -> None:
    texts = [f"reuse-{uuid.uuid4().hex[:8]} {n}" for n in range(2)]
    settings = Settings(
        upstream_base_url=upstream_url,
        upstream_max_connections=1,
        upstream_keepalive_connections=keepalive,
    )

    answers = asyncio.run(stream_twice(settings, texts))

    assert all("Hello!" in "".join(filter(None, answer)) for answer in answers), answers
    [first], [second] = (requests_mentioning(upstream_url, text) for text in texts)
    assert first["stream"] == second["stream"] == "finished"
    # One connection, kept; or, none to be kept, a new one for each request.
    assert (first["peer"] == second["peer"]) is (keepalive > 0)
