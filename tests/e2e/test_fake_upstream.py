"""The fake upstream's timing, over real HTTP: chunks spaced by [[delay]], and a client that
hangs up mid-stream stopping the handler. In process, httpx would buffer the whole body."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.fakes.upstream import create_app
from tests.support.servers import serve


def user(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "demo-model-x", "messages": [{"role": "user", "content": text}], **extra}


async def test_delay_directive_spaces_chunks(upstream_url: str) -> None:
    arrivals: list[float] = []
    payload = user("a b [[delay:60]]", stream=True)
    async with (
        httpx.AsyncClient(base_url=upstream_url, timeout=10.0) as client,
        client.stream("POST", "/chat/completions", json=payload) as response,
    ):
        async for line in response.aiter_lines():
            if line.startswith("data: ") and '"content"' in line:
                arrivals.append(time.monotonic())

    # 5 content tokens -> 4 gaps of 60 ms between the first and the last.
    assert len(arrivals) == 5
    assert arrivals[-1] - arrivals[0] >= 0.2


class _CompletionTracker:
    """ASGI wrapper noting when the app finishes handling a completion request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.finished = threading.Event()
        self.elapsed: float | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/chat/completions":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        try:
            await self.app(scope, receive, send)
        finally:
            self.elapsed = time.monotonic() - started
            self.finished.set()


async def test_client_disconnect_stops_the_stream() -> None:
    tracker = _CompletionTracker(create_app())
    words = " ".join(f"w{i}" for i in range(40))
    with serve(tracker, ready_path="/models", lifespan="off") as url:
        async with httpx.AsyncClient(base_url=url, timeout=10.0) as http:
            # 43 chunks 250 ms apart would take over 10 s if the server kept going.
            payload = user(f"{words} [[delay:250]]", stream=True)
            async with http.stream("POST", "/chat/completions", json=payload) as response:
                first = await anext(response.aiter_lines())
            assert json.loads(first.removeprefix("data: "))["choices"][0]["delta"] == {
                "role": "assistant",
                "content": "Hello! ",
            }
            finished = await asyncio.to_thread(tracker.finished.wait, 5.0)
            still_serving = await http.get("/models")

    assert finished, "the handler kept streaming after the client went away"
    assert tracker.elapsed is not None and tracker.elapsed < 3.0
    assert still_serving.status_code == 200
