"""Reading Ferry's SSE frames raw, to check exactly what went over the wire."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

# The events of a one-message text response, in OpenAI's order (deltas folded into one).
TEXT_EVENT_ORDER = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def iter_frames(response: httpx.Response) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """(event name, decoded data) for each frame; comment lines (keep-alives) are skipped."""
    return frames_from_lines(response.iter_lines())


def frames_from_lines(lines: Iterator[str]) -> Iterator[tuple[str | None, dict[str, Any]]]:
    name: str | None = None
    data: list[str] = []
    for line in lines:
        if line.startswith(":"):
            continue
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and data:
            yield name, json.loads("\n".join(data))
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
