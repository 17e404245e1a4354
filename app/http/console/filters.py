"""The response list's filters, read from the query string: a value the form could not have
sent is a 400 naming its parameter."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request

from app.engine.console_reads import LONGEST_PAGE, PAGE_SIZE, SINCE, ListQuery, parse_cursor
from app.engine.console_timeline import Mode
from app.http.query import query_choice, query_int
from app.statuses import ResponseStatus

#: The filters a list link carries over, in the order of the form.
FILTER_NAMES = ("id", "status", "model", "key", "mode", "since", "limit")


def list_query(request: Request) -> ListQuery:
    status = query_choice(request, "status", ("", *ResponseStatus), default="")
    mode = query_choice(request, "mode", ("", *Mode), default="")
    params = request.query_params
    before = params.get("before")
    return ListQuery(
        status=ResponseStatus(status) if status else None,
        model=_text(params.get("model")),
        key=_text(params.get("key")),
        mode=Mode(mode) if mode else None,
        since=query_choice(request, "since", tuple(SINCE), default="all"),
        id=_text(params.get("id")),
        before=parse_cursor(before) if before else None,
        limit=query_int(request, "limit", default=PAGE_SIZE, low=1, high=LONGEST_PAGE),
    )


def _text(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def list_url(request: Request, **changes: str | None) -> str:
    """The console's list with the request's filters, some changed (None: dropped)."""
    kept = {name: request.query_params.get(name) for name in FILTER_NAMES}
    kept.update(changes)
    query = urlencode({name: value for name, value in kept.items() if value})
    return f"/console?{query}" if query else "/console"
