"""Server-sent events framing."""

from __future__ import annotations

import orjson

from app.shapes import Event

KEEPALIVE = b": keep-alive\n\n"
#: The last frame of every stream Ferry ends: the specification's terminal `[DONE]`, after
#: the terminal event (the SDK stops reading there too).
DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def frame(event: Event) -> bytes:
    kind: str = event["type"]
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"
