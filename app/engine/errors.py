"""Errors the engine raises for the front end to turn into OpenAI error envelopes."""

from __future__ import annotations


class RequestError(Exception):
    """The client's request cannot be served; maps to a 4xx `invalid_request_error`."""

    status_code = 400
    error_type = "invalid_request_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status_code: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}
        if status_code is not None:
            self.status_code = status_code


class NotFound(RequestError):
    status_code = 404

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message, param=param, code=None)
