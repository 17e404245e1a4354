"""Reading Ferry's SSE frames raw, to check exactly what went over the wire."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx

from app.statuses import TERMINAL_EVENT_TYPES
from tests.support.event_types import message_events

STREAM_BOUND_S = 90.0
DONE = "[DONE]"
#: What a stream's last event may be before its `[DONE]`: a terminal event, or an `error`
#: that ends it (a shutdown, a flex timeout).
STREAM_END_TYPES = frozenset(TERMINAL_EVENT_TYPES | {"error"})

# The events of a one-message text response, in OpenAI's order (deltas folded into one).
TEXT_EVENT_ORDER = [
    "response.created",
    "response.in_progress",
    *message_events(deltas=1),
    "response.completed",
]


def iter_frames(
    response: httpx.Response, *, within_s: float = STREAM_BOUND_S
) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """(event name, decoded data) for each frame; comment lines (keep-alives) are skipped.

    Keep-alives keep a stream open forever; the read fails after `within_s` seconds.
    """
    return frames_from_lines(response.iter_lines(), within_s=within_s)


def frames_from_lines(
    lines: Iterator[str], *, within_s: float = STREAM_BOUND_S
) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """The event frames; the `data: [DONE]` that ends a stream is checked (nothing after
    it, and it follows a last event) and not yielded."""
    deadline = time.monotonic() + within_s
    name: str | None = None
    data: list[str] = []
    done = False
    last_type = None
    for line in lines:
        if time.monotonic() > deadline:
            raise AssertionError(f"the stream did not end within {within_s}s")
        if line.startswith(":"):
            continue
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and data:
            assert not done, "a frame after data: [DONE]"
            if data == [DONE]:
                assert name is None, "[DONE] is a data line alone"
                assert last_type in STREAM_END_TYPES, f"[DONE] after {last_type}"
                done = True
            else:
                event = json.loads("\n".join(data))
                last_type = event.get("type")
                yield name, event
            name, data = None, []


def stream_events(base_url: str, body: dict[str, Any], **kwargs: Any) -> list[dict[str, Any]]:
    """POST a streaming create and return every event, checking each frame's name."""
    events = []
    with httpx.stream(
        "POST", f"{base_url}/v1/responses", json={**body, "stream": True}, timeout=30, **kwargs
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for name, event in iter_frames(response):
            assert name == event["type"]
            events.append(event)
    return events
