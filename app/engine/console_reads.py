"""What the operator console shows: the overview (responses by status, queues, inline runs,
workers, failures, a filtered list) and one response in detail.

Everything is read from Postgres, so any API replica shows the same. Owners are shown by
what identifies their key without revealing it: a database key's name and prefixes, a
digest's first characters for a key of API_KEYS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from app.config import Settings
from app.engine.console_timeline import Mode, Timeline, build_timeline
from app.engine.errors import RequestError
from app.shapes import Item, JsonObject
from app.statuses import ResponseStatus
from app.store.console import (
    ConsoleStore,
    InlineRun,
    OwnerKeys,
    ResponseFilter,
    ResponseLine,
    WorkerState,
)
from app.store.queue import BACKGROUND_QUEUE, FLEX_QUEUE, RUN_RESPONSE_TASK
from app.store.rows import StoredResponse

PAGE_SIZE = 50
LONGEST_PAGE = 200
FAILURES_SHOWN = 10
INLINE_SHOWN = 20
#: The queues by the tier they serve: background responses of the default tier, and flex.
QUEUES = {"default": BACKGROUND_QUEUE, "flex": FLEX_QUEUE}
#: The time ranges a list may be cut to, by the name the filter uses.
SINCE: dict[str, timedelta | None] = {
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "24h": timedelta(days=1),
    "7d": timedelta(days=7),
    "all": None,
}
OPEN_OWNER_FILTER = "open"
# An API_KEYS owner is the first 32 hex digits of the key's digest.
_DIGEST_START = re.compile(r"[0-9a-f]{4,32}")
_LONGEST_FILTER = 200
# What the request summary lists besides tools and input, in this order, when sent.
_PARAMETERS = (
    "max_output_tokens",
    "max_tool_calls",
    "temperature",
    "top_p",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning",
    "text",
    "include",
    "top_logprobs",
    "truncation",
    "store",
    "previous_response_id",
    "metadata",
)


@dataclass(frozen=True)
class OwnerLabel:
    text: str  # what the console calls the owner
    detail: str  # how to tell its keys apart (prefixes), or what kind of owner it is
    filter: str  # what the key filter takes to list its responses


@dataclass(frozen=True)
class ListQuery:
    """The list's filters, as the operator set them; None: any."""

    status: ResponseStatus | None = None
    model: str | None = None
    key: str | None = None
    mode: Mode | None = None
    since: str = "all"
    id: str | None = None
    before: tuple[datetime, str] | None = None
    limit: int = PAGE_SIZE  # responses a page shows

    def __post_init__(self) -> None:
        if self.since not in SINCE:
            raise RequestError(
                f"Invalid 'since': expected one of {', '.join(SINCE)}.",
                param="since",
                code="invalid_value",
            )
        for name in ("model", "key", "id"):
            value = getattr(self, name)
            if value is not None and len(value) > _LONGEST_FILTER:
                raise RequestError(
                    f"Invalid '{name}': at most {_LONGEST_FILTER} characters.",
                    param=name,
                    code="invalid_value",
                )


@dataclass(frozen=True)
class Line:
    response: ResponseLine
    mode: Mode
    owner: OwnerLabel


@dataclass(frozen=True)
class Page:
    lines: list[Line]
    next_before: str | None  # the cursor of the page after this one; None: the last


@dataclass(frozen=True)
class StatusRow:
    status: ResponseStatus
    last_hour: int
    last_day: int


@dataclass(frozen=True)
class QueueView:
    label: str
    queue: str
    depth: int
    oldest_s: float | None


@dataclass(frozen=True)
class WorkerView:
    state: WorkerState
    alive: bool  # its last heartbeat is younger than STALL_THRESHOLD_S


@dataclass(frozen=True)
class InlineView:
    run: InlineRun
    owner: OwnerLabel


@dataclass(frozen=True)
class Overview:
    counts: list[StatusRow]
    queues: list[QueueView]
    inline: list[InlineView]
    inline_total: int
    workers: list[WorkerView]
    failures: list[Line]
    page: Page


@dataclass(frozen=True)
class RequestSummary:
    """What the response was asked for, at a glance; its input items in full."""

    tools: list[str]
    parameters: list[tuple[str, Any]]
    instructions: str | None
    input: list[Item]


@dataclass(frozen=True)
class Detail:
    response: StoredResponse
    mode: Mode
    owner: OwnerLabel
    request: RequestSummary
    timeline: Timeline
    last_logged_event: int | None  # its event log's last sequence number; None: no log
    cancellable: bool  # what the API's cancel acts on: a background response still running
    deletable: bool  # ended: the console deletes only finished responses


def cursor_of(line: ResponseLine) -> str:
    return f"{line.created_at.isoformat()}|{line.id}"


def parse_cursor(text: str) -> tuple[datetime, str]:
    moment, _, response_id = text.rpartition("|")
    try:
        at = datetime.fromisoformat(moment)
    except ValueError:
        at = None
    if at is None or at.tzinfo is None or not response_id:
        raise RequestError(
            "Invalid 'before': use the link to the next page.", param="before", code="invalid_value"
        )
    return at, response_id


class ConsoleReads:
    def __init__(self, store: ConsoleStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    async def overview(self, query: ListQuery) -> Overview:
        counted = {count.status: count for count in await self.store.status_counts()}
        counts = [
            StatusRow(status, counted[status].last_hour, counted[status].last_day)
            if status in counted
            else StatusRow(status, 0, 0)
            for status in ResponseStatus
        ]
        states = await self.store.queue_states(list(QUEUES.values()))
        queues = [
            QueueView(label, state.queue, state.depth, state.oldest_s)
            for label, state in zip(QUEUES, states, strict=True)
        ]
        inline, inline_total = await self.store.inline_running(INLINE_SHOWN)
        workers = [
            WorkerView(state, alive=state.silent_s < self.settings.stall_threshold_s)
            for state in await self.store.workers()
        ]
        failures = await self.store.latest_failures(FAILURES_SHOWN)
        page = await self.page(query)
        labels = await self._owner_labels(
            [run.owner for run in inline] + [line.owner for line in failures]
        )
        return Overview(
            counts=counts,
            queues=queues,
            inline=[InlineView(run, labels[run.owner]) for run in inline],
            inline_total=inline_total,
            workers=workers,
            failures=self._lines(failures, labels),
            page=page,
        )

    async def page(self, query: ListQuery) -> Page:
        """A page of the responses the query matches, newest first."""
        where = await self._filter(query)
        found = await self.store.responses(where, query.limit + 1)
        shown = found[: query.limit]
        labels = await self._owner_labels([line.owner for line in shown])
        more = len(found) > query.limit
        return Page(self._lines(shown, labels), cursor_of(shown[-1]) if more else None)

    async def exists(self, response_id: str) -> bool:
        return await self.store.response(response_id) is not None

    async def detail(self, response_id: str) -> Detail | None:
        response = await self.store.response(response_id)
        if response is None:
            return None
        steps = await self.store.steps(response_id)
        job_events = await self.store.job_events(response_id, RUN_RESPONSE_TASK)
        labels = await self._owner_labels([response.owner])
        running = not response.is_terminal
        return Detail(
            response=response,
            mode=Mode.of(response.background, response.stream, response.service_tier),
            owner=labels[response.owner],
            request=_summary(response.request),
            timeline=build_timeline(response, steps, job_events),
            last_logged_event=await self.store.last_logged_event(response_id),
            cancellable=response.background and running and response.is_kept,
            deletable=not running and response.is_kept,
        )

    async def _filter(self, query: ListQuery) -> ResponseFilter:
        owners: list[str] | None = None
        owner_prefix: str | None = None
        if query.key:
            owners, owner_prefix = await self._owners_matching(query.key)
        background, stream, flex = query.mode.matches if query.mode else (None, None, None)
        span = SINCE[query.since]
        return ResponseFilter(
            status=query.status,
            model=query.model or None,
            owners=owners,
            owner_prefix=owner_prefix,
            background=background,
            stream=stream,
            flex=flex,
            since=datetime.now(UTC) - span if span is not None else None,
            id_prefix=query.id or None,
            before=query.before,
        )

    async def _owners_matching(self, key: str) -> tuple[list[str], str | None]:
        """The owners a key filter names: a database key's name or prefix (its start will
        do), `open` for the open API, or `#` and the start of an API_KEYS owner's digest."""
        text = key.strip().rstrip("…")
        if text == OPEN_OWNER_FILTER:
            return [""], None
        owners = await self.store.owners_of_keys(text.removeprefix("name:"))
        digest_start = text.removeprefix("#")
        return owners, digest_start if _DIGEST_START.fullmatch(digest_start) else None

    async def _owner_labels(self, owners: list[str]) -> dict[str, OwnerLabel]:
        unique = sorted(set(owners))
        named = [owner for owner in unique if owner.startswith("name:")]
        keys: dict[str, OwnerKeys] = {}
        if named:
            keys = {found.owner: found for found in await self.store.keys_of_owners(named)}
        return {owner: _owner_label(owner, keys.get(owner)) for owner in unique}

    def _lines(self, found: list[ResponseLine], labels: dict[str, OwnerLabel]) -> list[Line]:
        return [
            Line(line, Mode.of(line.background, line.stream, line.service_tier), labels[line.owner])
            for line in found
        ]


def _owner_label(owner: str, keys: OwnerKeys | None) -> OwnerLabel:
    if owner == "":
        return OwnerLabel("open API", "made while the API ran without keys", OPEN_OWNER_FILTER)
    if owner.startswith("name:"):
        name = owner.removeprefix("name:")
        prefixes = ", ".join(f"{prefix}…" for prefix in keys.prefixes) if keys else "no key left"
        return OwnerLabel(name, f"database key {prefixes}", name)
    return OwnerLabel(f"API_KEYS #{owner[:8]}", "a key of API_KEYS (its digest)", f"#{owner[:8]}")


def _summary(request: JsonObject) -> RequestSummary:
    return RequestSummary(
        tools=[_tool_name(tool) for tool in request.get("tools") or []],
        parameters=[
            (name, request[name]) for name in _PARAMETERS if request.get(name) not in (None, {})
        ],
        instructions=request.get("instructions"),
        input=list(request.get("input") or []),
    )


def _tool_name(tool: JsonObject) -> str:
    kind = tool.get("type", "?")
    if kind == "function":
        return f"function {tool.get('name')}"
    if kind == "mcp":
        return f"MCP {tool.get('server_label')} ({tool.get('server_url')})"
    return str(kind)
