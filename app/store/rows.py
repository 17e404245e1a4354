"""The rows the store reads and writes, as typed values: what a response and its steps
are on disk, and what the store is asked to write."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from psycopg.rows import DictRow

from app.shapes import (
    ErrorInfo,
    IncompleteDetails,
    Item,
    JsonObject,
    StepResult,
    UpstreamRefusal,
    Usage,
)
from app.statuses import ResponseStatus, StepKind, StepStatus


@dataclass(frozen=True)
class StoredResponse:
    id: str
    owner: str
    status: ResponseStatus
    request: JsonObject  # the create request as accepted, `input` as normalised items
    model: str
    service_tier: str
    background: bool
    stream: bool
    previous_response_id: str | None
    output: list[Item] | None
    usage: Usage | None
    usage_missing: bool
    error: ErrorInfo | None
    incomplete_details: IncompleteDetails | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime
    job_id: int | None = None
    recoveries: int = 0
    upstream_refusal: UpstreamRefusal | None = None  # a 4xx of its first model turn
    conversation_id: str | None = None  # the conversation it runs on, if any
    # Its context: the conversation's items below this position (those there on accept).
    conversation_position: int | None = None

    @classmethod
    def from_row(cls, row: DictRow) -> StoredResponse:
        return cls(**{**row, "status": ResponseStatus(row["status"])})

    @classmethod
    def as_inserted(cls, new: NewResponse) -> StoredResponse:
        """The row `insert_response` writes for `new`, known before it is written: for a run
        that starts while its row commits. `new` carries its `created_at`."""
        assert new.created_at is not None, "the row's clock must be known before it is written"
        at = new.created_at
        running = new.status == ResponseStatus.IN_PROGRESS
        leased = new.lease_owner is not None
        return cls(
            id=new.id,
            owner=new.owner,
            status=new.status,
            request=new.request,
            model=new.model,
            service_tier=new.service_tier,
            background=new.background,
            stream=new.stream,
            previous_response_id=new.previous_response_id,
            output=None,
            usage=None,
            usage_missing=False,
            error=None,
            incomplete_details=None,
            lease_owner=new.lease_owner,
            lease_expires_at=at + timedelta(seconds=new.lease_ttl_s) if leased else None,
            created_at=at,
            started_at=at if running else None,
            completed_at=None,
            updated_at=at,
            job_id=new.job_id,
            conversation_id=new.conversation_id,
            conversation_position=new.conversation_position,
        )

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def is_kept(self) -> bool:
        """Created with `store: true` (the default): retrievable, and its content kept once
        it ends. A `store: false` response is forgotten when it ends (see `forget_content`)."""
        return self.request.get("store") is not False

    @property
    def is_forgotten(self) -> bool:
        """A `store: false` response read after it ended: nothing of its content is left."""
        return not self.is_kept and self.is_terminal and self.output is None


@dataclass(frozen=True)
class StoredStep:
    response_id: str
    ordinal: int
    kind: StepKind
    status: StepStatus
    request: JsonObject | None  # what the step was asked to do; its shape depends on the kind
    result: StepResult | None
    usage: Usage | None
    error: ErrorInfo | None
    started_at: datetime
    completed_at: datetime | None

    @classmethod
    def from_row(cls, row: DictRow) -> StoredStep:
        return cls(**{**row, "kind": StepKind(row["kind"]), "status": StepStatus(row["status"])})


@dataclass(frozen=True)
class Orphan:
    """A running response that nothing runs: no live inline lease, no live job."""

    id: str
    recoveries: int
    service_tier: str


@dataclass(frozen=True)
class QueueStats:
    """A job queue as a scrape sees it."""

    depth: int  # jobs waiting
    oldest_age_s: float  # how long the longest-waiting one has waited


@dataclass(frozen=True)
class Outcome:
    """What a response ends with: written on its row by `finish`."""

    status: ResponseStatus
    output: list[Item]
    usage: Usage | None = None
    usage_missing: bool = False
    error: ErrorInfo | None = None
    incomplete_details: IncompleteDetails | None = None
    upstream_refusal: UpstreamRefusal | None = None


@dataclass(frozen=True)
class StepOutcome:
    """What a step ends with: written on its row by `finish_step`."""

    status: StepStatus
    result: StepResult
    usage: Usage | None = None
    error: ErrorInfo | None = None


@dataclass(frozen=True)
class NewResponse:
    id: str
    owner: str
    status: ResponseStatus
    request: JsonObject
    model: str
    service_tier: str
    background: bool
    stream: bool
    previous_response_id: str | None
    lease_owner: str | None = None
    lease_ttl_s: float = 0.0
    job_id: int | None = None  # a deferred response's job, deferred in the same transaction
    conversation_id: str | None = None
    conversation_position: int | None = None  # set when it joins the conversation
    # When it was accepted; None: the database's clock as it is inserted. Set for a row whose
    # run starts before it is written (`StoredResponse.as_inserted`).
    created_at: datetime | None = None


#: What is left of the request of a `store: false` response once it has ended.
FORGOTTEN_REQUEST: JsonObject = {"store": False}
