"""Reading a JSON request body: within the size limit, and only what Postgres can store.

NaN and Infinity are not JSON and are refused as such. A decoded body is walked once
before anything else sees it. Nesting beyond MAX_JSON_DEPTH,
a NUL character (which neither `jsonb` nor `text` can hold) and a lone UTF-16 surrogate
(which is no character at all and cannot be encoded as UTF-8) are refused with a 400 that
names where they are, instead of failing later as a 500 or half-written row.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request

from app.engine.errors import RequestError
from app.http.errors import BodyTooLarge

#: Deeper than any real request needs; bounded so that nothing recurses without limit.
MAX_JSON_DEPTH = 64


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
    return decode_json(b"".join(chunks))


def decode_json(raw: bytes | str) -> Any:
    """A request's JSON (a body, a WebSocket message), refused as a 400 unless it is JSON
    that Postgres can store."""
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise _too_deep(None) from None
    except ValueError:
        raise RequestError(
            "We could not parse the JSON body of your request. The body must be valid JSON.",
            code="invalid_json",
        ) from None
    check_storable(body)
    return body


def check_storable(value: Any) -> None:
    """Refuse JSON that is nested too deeply or holds strings Postgres cannot store."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, str):
            _check_text(node, path or None)
        elif isinstance(node, dict | list):
            if depth >= MAX_JSON_DEPTH:
                # Named by its top-level parameter: the full path would be as deep as the JSON.
                raise _too_deep(re.split(r"[.\[]", path, maxsplit=1)[0] or None)
            if isinstance(node, dict):
                for key, child in node.items():
                    _check_text(key, path or None)  # a bad key is named by its object
                    where = f"{path}.{key}" if path else key
                    stack.append((child, where, depth + 1))
            else:
                stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(node))


def _check_text(text: str, param: str | None) -> None:
    if "\x00" in text:
        raise RequestError(
            "Invalid value: strings may not contain the NUL character (\\u0000).",
            param=param,
            code="invalid_value",
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError(
            "Invalid value: strings may not contain unpaired UTF-16 surrogates.",
            param=param,
            code="invalid_value",
        ) from None


def _refuse_constant(name: str) -> Any:
    # Python's decoder accepts NaN and Infinity, which are not JSON and which jsonb refuses.
    raise ValueError(f"{name} is not valid JSON")


def _too_deep(param: str | None) -> RequestError:
    return RequestError(
        f"The JSON body is nested more than {MAX_JSON_DEPTH} levels deep.",
        param=param,
        code="invalid_json",
    )
