"""The JSON shapes Ferry stores, streams and echoes, named once for every layer.

Items, events and usage stay plain dicts: they are stored, streamed and echoed as they
are, and the API's own item types are open-ended. The aliases name what a dict holds; the
small fixed shapes Ferry itself writes are TypedDicts. Like `app.statuses`, this module
sits below the store and the engine, so both can use it.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

#: A decoded JSON object of no fixed shape: raw request bodies, tool parameter schemas,
#: upstream payloads, read key by key.
JsonObject = dict[str, Any]
#: An input or output item: `{"type": "message" | "function_call" | ..., "id": ..., ...}`.
Item = dict[str, Any]
#: A content part of a message: `{"type": "output_text" | "input_text" | ..., ...}`.
Part = dict[str, Any]
#: A streaming event as sent: `type`, `sequence_number` and the fields of its type.
Event = dict[str, Any]
#: Token usage in the Responses shape (`input_tokens`, `output_tokens`, details, ...).
Usage = dict[str, Any]


class ErrorInfo(TypedDict):
    """A response's (or a step's) `error`: a machine-readable code and a message."""

    code: str
    message: str


class IncompleteDetails(TypedDict):
    """An `incomplete` response's `incomplete_details`: the limit that cut it short."""

    reason: str | None


class StepResult(TypedDict):
    """What a finished step leaves on its row: the output items it produced."""

    items: list[Item]
    usage_missing: NotRequired[bool]  # a model turn whose upstream reported no usage
    incomplete_reason: NotRequired[str | None]  # a model turn cut short by a limit


class UpstreamRefusal(TypedDict):
    """What the upstream answered a model turn with when it refused it (an HTTP error
    status), as it said it: a blocking create whose first turn it refused answers with this.
    For 401/403 the message and code are Ferry's own: the upstream's words may quote keys."""

    status: int  # the upstream's HTTP status
    message: str
    code: str | None
    param: str | None
    retry_after_s: float | None  # from its `Retry-After`, when it sent a usable one
