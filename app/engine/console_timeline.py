"""A response's life as the console tells it: created, queued, picked up, each step, each
attempt that stopped and was taken up again, and its end.

Built from what is stored: the response row, its steps, and the events procrastinate wrote
for every job that ran it (a recovery queues a new job, so there may be several). An
attempt is one run of the loop: an inline run starts with the response; each time a worker
picks a job up, another one starts. A step belongs to the attempt that was running when it
started.
"""

from __future__ import annotations

import bisect
import enum
from dataclasses import dataclass
from datetime import datetime

from app.engine.run_state import is_abandoned
from app.shapes import ErrorInfo, Item, JsonObject, Usage
from app.statuses import StepKind
from app.store.console import JobEvent
from app.store.rows import StoredResponse, StoredStep


class Mode(enum.StrEnum):
    """How a response was asked to run: the execution modes of the API."""

    BLOCKING = "blocking"
    STREAM = "stream"
    BACKGROUND = "background"
    BACKGROUND_STREAM = "background_stream"
    FLEX = "flex"

    @property
    def label(self) -> str:
        return _MODE_LABELS[self]

    @property
    def runs_inline(self) -> bool:
        return self in (Mode.BLOCKING, Mode.STREAM)

    @property
    def matches(self) -> tuple[bool | None, bool | None, bool | None]:
        """What a response of this mode has as (background, stream, flex tier); None: any."""
        return _MODE_MATCHES[self]

    @classmethod
    def of(cls, background: bool, stream: bool, service_tier: str) -> Mode:
        if background:
            return Mode.BACKGROUND_STREAM if stream else Mode.BACKGROUND
        if service_tier == "flex":
            return Mode.FLEX
        return Mode.STREAM if stream else Mode.BLOCKING


_MODE_LABELS = {
    Mode.BLOCKING: "inline, blocking",
    Mode.STREAM: "inline stream",
    Mode.BACKGROUND: "background",
    Mode.BACKGROUND_STREAM: "background stream",
    Mode.FLEX: "flex",
}
_MODE_MATCHES: dict[Mode, tuple[bool | None, bool | None, bool | None]] = {
    Mode.BLOCKING: (False, False, False),
    Mode.STREAM: (False, True, False),
    Mode.BACKGROUND: (True, False, None),
    Mode.BACKGROUND_STREAM: (True, True, None),
    Mode.FLEX: (False, None, True),
}


@dataclass(frozen=True)
class StepView:
    ordinal: int
    kind: StepKind
    name: str  # what it did: "model turn", "tool call: get_weather", ...
    status: str
    attempt: int
    started_at: datetime
    completed_at: datetime | None
    usage: Usage | None
    error: ErrorInfo | None
    abandoned: bool  # cut off by its process stopping; a later attempt redid it
    input: JsonObject | None  # what it was asked (a model turn: the call, without messages)
    output: list[Item]  # the items it produced

    @property
    def duration_s(self) -> float | None:
        if self.completed_at is None:
            return None
        return (self.completed_at - self.started_at).total_seconds()


class EntryKind(enum.StrEnum):
    CREATED = "created"
    QUEUED = "queued"
    PICKED_UP = "picked_up"
    STOPPED = "stopped"  # an attempt ended without ending the response: retried later
    JOB = "job"  # another transition of a job, told for the record
    STEP = "step"
    ENDED = "ended"


@dataclass(frozen=True)
class Entry:
    at: datetime
    kind: EntryKind
    title: str
    detail: str = ""
    step: StepView | None = None


@dataclass(frozen=True)
class Timeline:
    entries: list[Entry]
    steps: list[StepView]
    attempts: int  # runs of the loop so far (0: never picked up)


def build_timeline(
    response: StoredResponse, steps: list[StoredStep], job_events: list[JobEvent]
) -> Timeline:
    mode = Mode.of(response.background, response.stream, response.service_tier)
    starts = sorted(event.at for event in job_events if event.type == "started")
    if mode.runs_inline:
        starts = sorted([response.created_at, *starts])
    views = [_step_view(step, _attempt_at(starts, step.started_at)) for step in steps]
    entries = [Entry(response.created_at, EntryKind.CREATED, "created", mode.label)]
    if mode.runs_inline:
        entries.append(
            Entry(
                response.created_at,
                EntryKind.PICKED_UP,
                "run inline (attempt 1)",
                "by the API process that accepted it",
            )
        )
    entries += _job_entries(job_events, starts)
    if not job_events and not mode.runs_inline and response.started_at is not None:
        # The jobs were deleted (retention); the row still says when work began.
        entries.append(Entry(response.started_at, EntryKind.PICKED_UP, "picked up"))
    for view in views:
        entries.append(Entry(view.started_at, EntryKind.STEP, view.name, view.status, view))
    if response.is_terminal:
        ended_at = response.completed_at or response.updated_at
        entries.append(Entry(ended_at, EntryKind.ENDED, response.status, _ending(response)))
    # Stable: what happened at the same moment stays in the order it was told.
    entries.sort(key=lambda entry: entry.at)
    return Timeline(entries=entries, steps=views, attempts=len(starts))


def _attempt_at(starts: list[datetime], moment: datetime) -> int:
    return max(bisect.bisect_right(starts, moment), 1)


def _job_entries(job_events: list[JobEvent], starts: list[datetime]) -> list[Entry]:
    entries = []
    first_job = job_events[0].job_id if job_events else None
    for event in job_events:
        job = f"job {event.job_id}, queue {event.queue}"
        if event.type == "deferred":
            again = event.job_id != first_job
            title = "queued again" if again else "queued"
            detail = f"{job}: the recovery sweep found nothing running it" if again else f"{job}"
            entries.append(Entry(event.at, EntryKind.QUEUED, title, detail))
        elif event.type == "started":
            attempt = _attempt_at(starts, event.at)
            entries.append(
                Entry(event.at, EntryKind.PICKED_UP, f"picked up (attempt {attempt})", job)
            )
        elif event.type == "deferred_for_retry":
            attempt = _attempt_at(starts, event.at)
            detail = f"{job}: its worker died or stopped; the job went back to the queue"
            entries.append(Entry(event.at, EntryKind.STOPPED, f"attempt {attempt} stopped", detail))
        else:
            title = _JOB_EVENT_TITLES.get(event.type, event.type.replace("_", " "))
            entries.append(Entry(event.at, EntryKind.JOB, f"job {title}", job))
    return entries


_JOB_EVENT_TITLES = {
    "succeeded": "finished",
    "failed": "failed (its task raised)",
    "cancelled": "cancelled before it ran",
    "abort_requested": "asked to stop",
    "aborted": "stopped",
}


def _ending(response: StoredResponse) -> str:
    if response.error:
        return f"{response.error.get('code')}: {response.error.get('message')}"
    if response.incomplete_details:
        return f"reason: {response.incomplete_details.get('reason')}"
    return ""


def _step_view(step: StoredStep, attempt: int) -> StepView:
    return StepView(
        ordinal=step.ordinal,
        kind=step.kind,
        name=_step_name(step),
        status=step.status,
        attempt=attempt,
        started_at=step.started_at,
        completed_at=step.completed_at,
        usage=step.usage,
        error=step.error,
        abandoned=is_abandoned(step),
        input=step.request,
        output=list(step.result["items"] if step.result else []),
    )


def _step_name(step: StoredStep) -> str:
    if step.kind == StepKind.MODEL_CALL:
        return "model turn"
    request = step.request or {}
    if "mcp_list_tools" in request:
        return f"MCP tool listing: {request['mcp_list_tools']}"
    what = "MCP call" if request.get("type") == "mcp_call" else "tool call"
    name = f"{what}: {request.get('name', '?')}"
    return f"{name} (not run)" if "skipped" in request else name
