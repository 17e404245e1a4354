"""The OpenAI error envelope, for every error the API returns, and the HTTP status of each
of the engine's refusals.

    engine error        status  type
    RequestError        400     invalid_request_error
    NotFound            404     invalid_request_error
    Conflict            409     invalid_request_error (NotKept too)
    Busy                429     rate_limit_exceeded (with Retry-After when known)
    UpstreamRefused     the upstream's 4xx (with its Retry-After); 502 for its 401/403
    UpstreamFailed      502 server_error

Errors only the front end raises carry their status themselves (`HttpError`). An error about
a response that exists (an upstream refusal, a result not kept) names it in the
`x-response-id` header, since the envelope has no place for it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from app.engine.errors import (
    Busy,
    Conflict,
    NotFound,
    NotKept,
    RequestError,
    UpstreamFailed,
    UpstreamRefused,
)

log = logging.getLogger(__name__)

_TYPE_BY_STATUS = {
    429: "rate_limit_exceeded",
    500: "server_error",
    502: "server_error",
    503: "server_error",
    504: "server_error",
}
# An upstream that rejects Ferry's credentials is a bad gateway, not a bad request.
_UPSTREAM_CREDENTIAL_STATUSES = frozenset({401, 403})
RESPONSE_ID_HEADER = "x-response-id"
# Most specific first: the first class an error is an instance of decides.
_STATUS_BY_ERROR: list[tuple[type[RequestError], int]] = [
    (NotFound, 404),
    (Conflict, 409),
    (Busy, 429),
    (UpstreamFailed, 502),
    (RequestError, 400),
]


class HttpError(RequestError):
    """A refusal of the front end's own (authentication, body size, a held request's
    deadline), with its HTTP status."""

    status_code = 400

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code)
        if status_code is not None:
            self.status_code = status_code


class Unauthorized(HttpError):
    status_code = 401


class BodyTooLarge(HttpError):
    status_code = 413


class GatewayTimeout(HttpError):
    """A held request whose response did not end in time; the work goes on."""

    status_code = 504


def error_type(status_code: int) -> str:
    return _TYPE_BY_STATUS.get(status_code, "invalid_request_error")


def error_response(
    status_code: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    envelope = {
        "error": {
            "message": message,
            "type": error_type(status_code),
            "param": param,
            "code": code,
        }
    }
    all_headers = dict(headers or {})
    if 400 <= status_code < 500 and status_code not in (408, 429):
        # Tell SDKs that sending the same request again will not help.
        all_headers.setdefault("x-should-retry", "false")
    return JSONResponse(envelope, status_code=status_code, headers=all_headers)


def status_of(exc: RequestError) -> int:
    if isinstance(exc, HttpError):
        return exc.status_code
    if isinstance(exc, UpstreamRefused):
        if exc.upstream_status in _UPSTREAM_CREDENTIAL_STATUSES:
            return 502
        return exc.upstream_status
    return next(status for kind, status in _STATUS_BY_ERROR if isinstance(exc, kind))


def headers_of(exc: RequestError) -> dict[str, str]:
    headers = {}
    if isinstance(exc, Busy | UpstreamRefused) and exc.retry_after_s is not None:
        headers["Retry-After"] = str(math.ceil(exc.retry_after_s))
    if isinstance(exc, UpstreamRefused | NotKept) and exc.response_id is not None:
        headers[RESPONSE_ID_HEADER] = exc.response_id
    if isinstance(exc, UpstreamRefused):
        if exc.upstream_status in _UPSTREAM_CREDENTIAL_STATUSES:
            # Asking again cannot help until the server is reconfigured.
            headers["x-should-retry"] = "false"
    return headers


async def on_request_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestError)
    return error_response(
        status_of(exc), exc.message, param=exc.param, code=exc.code, headers=headers_of(exc)
    )


async def on_database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # Postgres is down or restarting: say so at once, so clients retry, rather than hang.
    log.warning("database unavailable", extra={"error": type(exc).__name__})
    return error_response(
        503,
        "The database is unavailable; retry shortly.",
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
    return error_response(500, "The server had an error while processing your request.")
