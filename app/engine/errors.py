"""Why the engine refuses a request. The front end turns each into an HTTP status and an
OpenAI error envelope (`app.http.errors`); the engine itself knows nothing of HTTP.

    RequestError        the request cannot be served as sent (a bad parameter, ...)
    ├── NotFound        what it names does not exist, or is not the caller's
    ├── Busy            not now: a capacity limit is reached; the same request may pass later
    ├── Conflict        it contradicts an earlier request (an Idempotency-Key reused)
    │   ├── NotKept     it asks again for a result created with `store: false`, now gone
    │   └── ConversationLocked  another response is running on the conversation it names
    ├── UpstreamRefused the upstream refused the first model turn of a blocking create, or
    │                   the call Ferry made for a request outside any response (a compaction)
    └── UpstreamFailed  the upstream failed such a call: an error status past Ferry's
                        retries, a timeout, no connection
"""

from __future__ import annotations

from app.shapes import UpstreamRefusal


class RequestError(Exception):
    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class NotFound(RequestError):
    pass


class Busy(RequestError):
    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message, code="rate_limit_exceeded")
        self.retry_after_s = retry_after_s


class Conflict(RequestError):
    pass


class NotKept(Conflict):
    """A create retried with the Idempotency-Key of a `store: false` response that has
    ended: its result was not kept, so it cannot be told again. `response_id` names it."""

    def __init__(self, message: str, *, response_id: str) -> None:
        super().__init__(message, param=None, code="response_not_stored")
        self.response_id = response_id


class ConversationLocked(Conflict):
    """A response, or a change to the items, on a conversation another response is still
    queued or running on: refused until it ends (`code: conversation_locked`)."""

    def __init__(self, message: str, *, param: str) -> None:
        super().__init__(message, param=param, code="conversation_locked")


class UpstreamRefused(RequestError):
    """The upstream refused the first model turn of a blocking create (the response exists,
    recorded `failed`; `response_id` names it), or a call made outside any response
    (`response_id` None). The upstream's status decides the answer's (401/403 are Ferry's
    misconfiguration, not the client's)."""

    def __init__(self, refusal: UpstreamRefusal, *, response_id: str | None) -> None:
        super().__init__(refusal["message"], param=refusal["param"], code=refusal["code"])
        self.upstream_status = refusal["status"]
        self.retry_after_s = refusal["retry_after_s"]
        self.response_id = response_id


class UpstreamFailed(RequestError):
    """The upstream failed a call Ferry made for a request outside any response (the summary
    of a compaction) other than by refusing it: a 5xx still there after Ferry's retries, a
    timeout, no connection, or an answer with nothing in it."""
