"""What travels on a `/v1/responses` WebSocket: the client's `response.create` messages,
and the server's events and errors, one JSON object per text message.

A `response.create` is a create body with `"type": "response.create"`, without the HTTP
transport's `stream`, `stream_options` and `background`: every turn streams its events on
the socket. It may name a lane, `stream_id`, which every event of the turn echoes.

Events are the SSE stream's objects, unchanged. A turn refused before it starts is an
`error` envelope with the HTTP status the same refusal has over HTTP: `{"type": "error",
"status": 400, "error": {"type", "code", "message", "param"}}`, `code` always a string.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from app.engine.continuation import Lane
from app.engine.errors import RequestError
from app.http.body import decode_json
from app.http.errors import BodyTooLarge, error_type, headers_of, status_of
from app.shapes import Event, JsonObject

CREATE = "response.create"
#: Create parameters of the HTTP transport that a WebSocket turn must not send.
HTTP_ONLY_PARAMETERS = ("stream", "stream_options", "background")
#: A lane's name, as OpenAI's SDK checks it.
_STREAM_ID = re.compile(r"[A-Za-z0-9_.-]{1,256}")


def parse_create_message(data: str | bytes, max_bytes: int) -> tuple[JsonObject, Lane]:
    """The create body a `response.create` message carries (as a streaming create's), and
    its lane; a `RequestError` for anything else."""
    size = len(data.encode() if isinstance(data, str) else data)
    if size > max_bytes:
        raise BodyTooLarge(
            f"Message is larger than the limit of {max_bytes} bytes.", code="body_too_large"
        )
    message = decode_json(data)
    if not isinstance(message, dict):
        raise RequestError("Each message must be a JSON object.", param=None, code="invalid_json")
    kind = message.get("type")
    if kind != CREATE:
        raise RequestError(
            f"Invalid value: '{kind}'. Supported values are: '{CREATE}'.",
            param="type",
            code="invalid_value" if kind is not None else "missing_required_parameter",
        )
    for name in HTTP_ONLY_PARAMETERS:
        if message.get(name) is not None:
            raise RequestError(
                f"Unsupported parameter: '{name}' is not used over WebSocket, where every "
                "response streams its events on the socket.",
                param=name,
                code="unsupported_parameter",
            )
    lane = message.get("stream_id")
    if lane is not None and not (isinstance(lane, str) and _STREAM_ID.fullmatch(lane)):
        raise RequestError(
            "Invalid 'stream_id': 1 to 256 letters, digits, '_', '-' or '.'.",
            param="stream_id",
            code="invalid_stream_id",
        )
    body = {k: v for k, v in message.items() if k not in ("type", "stream_id")}
    return {**body, "stream": True}, lane


def event_message(event: Event, lane: Lane) -> str:
    """An event as the socket's text message; a named lane's events carry its name."""
    return orjson.dumps(event if lane is None else {**event, "stream_id": lane}).decode()


def error_envelope(
    status: int,
    message: str,
    *,
    code: str | None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
    lane: Lane = None,
) -> JsonObject:
    """A WebSocket error: the HTTP error envelope with its status beside it."""
    kind = error_type(status)
    error: dict[str, Any] = {"type": kind, "code": code or kind, "message": message}
    error["param"] = param
    if headers:
        error["headers"] = headers
    envelope: JsonObject = {"type": "error", "status": status, "error": error}
    if lane is not None:
        envelope["stream_id"] = lane
    return envelope


def refusal_envelope(exc: RequestError, lane: Lane = None) -> JsonObject:
    """A refusal of the engine's or the front end's, with the status HTTP gives it."""
    return error_envelope(
        status_of(exc),
        exc.message,
        code=exc.code,
        param=exc.param,
        headers={k.lower(): v for k, v in headers_of(exc).items()} or None,
        lane=lane,
    )
