"""Reading a JSON request body within the configured size limit."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from app.engine.errors import RequestError
from app.http.errors import BodyTooLarge


async def read_json(request: Request, max_bytes: int) -> Any:
    too_large = BodyTooLarge(
        f"Request body is larger than the limit of {max_bytes} bytes.", code="body_too_large"
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        return json.loads(raw)
    except ValueError:
        raise RequestError(
            "We could not parse the JSON body of your request. The body must be valid JSON.",
            code="invalid_json",
        ) from None
