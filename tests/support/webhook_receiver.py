"""A real webhook receiver for the tests: records every delivery it gets, byte for byte,
and answers as each test scripts it.

Each test posts to its own path (`POST /hooks/{name}`), so tests sharing the receiver do not
see each other's deliveries. `fail_first(name, n, status)` makes the first `n` requests to
a path fail with `status`; the ones after are answered 200. `hold_first(name)` makes the
first request to a path wait, unanswered, until `release(name)` (a receiver that hangs).
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route


@dataclass(frozen=True)
class Received:
    body: bytes
    headers: dict[str, str]
    answered: int | None  # the status the receiver answered with; None: held


@dataclass
class WebhookReceiver:
    base_url: str = ""
    _received: dict[str, list[Received]] = field(default_factory=lambda: defaultdict(list))
    _failures_left: dict[str, tuple[int, int]] = field(default_factory=dict)
    _holds: dict[str, threading.Event] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, name: str) -> str:
        return f"{self.base_url}/hooks/{name}"

    def fail_first(self, name: str, count: int, status: int = 503) -> None:
        with self._lock:
            self._failures_left[name] = (count, status)

    def hold_first(self, name: str) -> None:
        with self._lock:
            self._holds[name] = threading.Event()

    def release(self, name: str) -> None:
        with self._lock:
            self._holds[name].set()

    def received(self, name: str) -> list[Received]:
        with self._lock:
            return list(self._received[name])

    def acknowledged(self, name: str) -> list[Received]:
        """The deliveries to `name` it answered with a 2xx."""
        return [r for r in self.received(name) if r.answered and 200 <= r.answered < 300]

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            name = request.path_params["name"]
            body = await request.body()
            with self._lock:
                hold = self._holds.get(name)
                if hold is not None and not hold.is_set() and not self._received[name]:
                    self._received[name].append(Received(body, dict(request.headers), None))
                else:
                    hold = None
            if hold is not None:
                # Bounded, so a test that forgets to release does not hang the server.
                await asyncio.to_thread(hold.wait, 60)
                return PlainTextResponse("too late")
            with self._lock:
                left, status = self._failures_left.get(name, (0, 200))
                if left > 0:
                    self._failures_left[name] = (left - 1, status)
                else:
                    status = 200
                self._received[name].append(Received(body, dict(request.headers), status))
            return PlainTextResponse("no" if status >= 300 else "ok", status_code=status)

        async def ready(request: Request) -> Response:
            return PlainTextResponse("ready")

        return Starlette(
            routes=[
                Route("/hooks/{name}", hook, methods=["POST"]),
                Route("/ready", ready, methods=["GET"]),
            ]
        )
