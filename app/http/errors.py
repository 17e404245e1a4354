"""The OpenAI error envelope, for every error the API returns."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from app.engine.errors import RequestError

log = logging.getLogger(__name__)

_TYPE_BY_STATUS = {
    401: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_exceeded",
    503: "server_error",
    504: "server_error",
}


def error_response(
    status_code: int,
    message: str,
    *,
    error_type: str | None = None,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    envelope = {
        "error": {
            "message": message,
            "type": error_type or _TYPE_BY_STATUS.get(status_code, "invalid_request_error"),
            "param": param,
            "code": code,
        }
    }
    all_headers = dict(headers or {})
    if 400 <= status_code < 500 and status_code not in (408, 429):
        # Tell SDKs that sending the same request again will not help.
        all_headers.setdefault("x-should-retry", "false")
    return JSONResponse(envelope, status_code=status_code, headers=all_headers)


async def on_request_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestError)
    return error_response(
        exc.status_code,
        exc.message,
        error_type=exc.error_type,
        param=exc.param,
        code=exc.code,
        headers=exc.headers,
    )


async def on_database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # Postgres is down or restarting: say so at once, so clients retry, rather than hang.
    log.warning("database unavailable", extra={"error": type(exc).__name__})
    return error_response(
        503,
        "The database is unavailable; retry shortly.",
        error_type="server_error",
        code="database_unavailable",
        headers={"Retry-After": "2"},
    )


async def on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    message = exc.detail if isinstance(exc.detail, str) else "Request failed."
    if exc.status_code == 404:
        message = f"Unknown request URL: {request.method} {request.url.path}."
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed for {request.url.path}."
    return error_response(exc.status_code, message, headers=exc.headers)


async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return error_response(
        500, "The server had an error while processing your request.", error_type="server_error"
    )
