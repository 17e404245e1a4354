"""An in-memory `StepStore`: the Postgres store's semantics that the loop relies on, without
a database. A testing API, not for production use.

What it models, query for query (see `app/store/queries.sql`):

- `mark_in_progress` and `finish` only move a response that is still active (`queued` or
  `in_progress`) and return None otherwise: the first terminal state wins. `finish`
  forgets the content of a `store: false` response as it ends it, and returns the row as
  it was before. Told `appends_to_conversation`, it appends the input and output of a
  response ending `completed` or `incomplete` to its conversation (ids already there are
  not added twice). Without it, it appends nothing: stricter than Postgres, which would
  append outside the ending's transaction, so a loop that forgets to ask for the
  transaction fails its tests.
- Conversations are lists of items (`seed_conversation`); an item's position is its index.
- Steps are keyed by (response id, ordinal): starting one twice, or one of a response that
  does not exist, raises (a primary or foreign key violation); `finish_step` overwrites
  whatever the step holds; `record_step_items` only touches a step still `in_progress`.
- Every value goes in and comes out as JSON does through `jsonb`, so no caller can change a
  stored row through an alias, and whatever could not be stored fails here too.
- Rows come back as `StoredResponse` / `StoredStep`, built by their `from_row`.
- `finish` takes `background`, as the real store does, and ignores it: the webhook
  deliveries a background ending enqueues are not modelled (the e2e tier tests them).
- Every call is a suspension point, as a database round trip is. A write is committed even
  when its caller is cancelled during the call (the real store shields its queries).

For fault injection, `crash_at` makes the store behave like a database whose client process
died at a chosen write (as with `kill -9`): that call and every later one raise
`ProcessCrash`, and `restarted()` is a store holding exactly what was committed, for the
next attempt to resume from.

    store = MemoryStore()
    stored = store.seed({"model": "m", "input": "Hi"})
    store.crash_at(at_write("finish_step"))
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TypeVar

from app import ids
from app.engine.request import parse_create_request
from app.engine.submission import stored_request
from app.shapes import Item, JsonObject
from app.statuses import ACTIVE_STATUSES, ResponseStatus, StepKind, StepStatus
from app.store.rows import FORGOTTEN_REQUEST, Outcome, StepOutcome, StoredResponse, StoredStep

Row = dict[str, Any]
_T = TypeVar("_T")


class ProcessCrash(BaseException):
    """The process using the store died: nothing it does from here on reaches the database.

    A `BaseException`, like the `SystemExit` of a dying process, so that no `except
    Exception` in the code under test can turn it into an orderly ending.
    """


class StoreError(Exception):
    """A write the database would refuse: a key violation."""


@dataclass(frozen=True)
class Write:
    """One write to the store, numbered from 1 in the order they were made."""

    number: int
    name: str  # the method: "mark_in_progress", "finish", "start_step", ...
    response_id: str
    ordinal: int | None = None


def at_write(name: str, ordinal: int | None = None) -> Callable[[Write], bool]:
    """For `crash_at`: the first write by store method `name` (to step `ordinal`, if given)."""

    def at(write: Write) -> bool:
        return write.name == name and (ordinal is None or write.ordinal == ordinal)

    return at


def at_number(number: int) -> Callable[[Write], bool]:
    """For `crash_at`: the write numbered `number`."""
    return lambda write: write.number == number


def _json(value: Any) -> Any:
    """`value` as it reads back from a `jsonb` column."""
    return None if value is None else json.loads(json.dumps(value))


_LEASE = timedelta(seconds=30)  # a live inline lease, as the API process holds one


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Crash:
    at: Callable[[Write], bool]
    committed: bool  # whether the write the crash happens at reached the database


@dataclass
class MemoryStore:
    """Responses and their steps in dicts; see the module docstring for the semantics."""

    responses: dict[str, Row] = field(default_factory=dict)
    step_rows: dict[tuple[str, int], Row] = field(default_factory=dict)
    #: Every write made, in order (including one a crash stopped).
    writes: list[Write] = field(default_factory=list)
    #: The reasoning sealing key, once a key ring has asked for one (`sealing_key`).
    stored_sealing_key: str | None = None
    #: Conversations: id -> its items in order (`seed_conversation`).
    conversations: dict[str, list[Item]] = field(default_factory=dict)
    _crash: _Crash | None = field(default=None, repr=False)
    _crashed: MemoryStore | None = field(default=None, repr=False)

    # --- seeding and inspecting (testing API) -------------------------------------------

    def seed(
        self,
        body: Mapping[str, Any],
        *,
        status: ResponseStatus = ResponseStatus.QUEUED,
        owner: str = "",
        response_id: str | None = None,
        lease_owner: str | None = None,
        carried: list[Item] | None = None,
    ) -> StoredResponse:
        """Insert the row the API side would insert for a create request `body`, and return it.

        The body is validated and normalised as POST /v1/responses does it
        (`parse_create_request`, then `stored_request`), so `request["input"]` holds the
        normalised items with their ids. `status` is `queued` for deferred work and
        `in_progress` for an inline run. `carried`: the conversation before the input that
        the row carries (a WebSocket continuation).
        """
        request, items = parse_create_request(dict(body))
        conversation_id = request.conversation_id
        now = _now()
        row: Row = {
            "id": response_id or ids.response_id(),
            "owner": owner,
            "status": status,
            "request": _json(stored_request(request, items, carried)),
            "model": request.model,
            "service_tier": request.service_tier or "auto",
            "background": request.background,
            "stream": request.stream,
            "previous_response_id": request.previous_response_id,
            "output": None,
            "usage": None,
            "usage_missing": False,
            "error": None,
            "incomplete_details": None,
            "lease_owner": lease_owner,
            "lease_expires_at": now + _LEASE if lease_owner is not None else None,
            "created_at": now,
            "started_at": None,
            "completed_at": None,
            "updated_at": now,
            "job_id": None,
            "conversation_id": conversation_id,
            "conversation_position": (
                len(self.conversations[conversation_id]) if conversation_id else None
            ),
        }
        return self.insert(StoredResponse.from_row(row))

    def seed_conversation(self, items: list[Item]) -> str:
        """A new conversation holding `items` (normalised input items); its id."""
        conversation_id = ids.new_id("conv")
        self.conversations[conversation_id] = _json(items)
        return conversation_id

    def insert(self, stored: StoredResponse) -> StoredResponse:
        if stored.id in self.responses:
            raise StoreError(f"duplicate response id {stored.id}")
        row = {**stored.__dict__, "request": _json(stored.request)}
        self.responses[stored.id] = row
        return StoredResponse.from_row(copy.deepcopy(row))

    def response(self, response_id: str) -> StoredResponse:
        """The row as it is now, whoever owns it; KeyError when there is none."""
        return StoredResponse.from_row(copy.deepcopy(self.responses[response_id]))

    def step_list(self, response_id: str) -> list[StoredStep]:
        """The response's steps as they are now, in order."""
        rows = [row for (rid, _), row in self.step_rows.items() if rid == response_id]
        rows.sort(key=lambda row: row["ordinal"])
        return [StoredStep.from_row(copy.deepcopy(row)) for row in rows]

    # --- fault injection (testing API) --------------------------------------------------

    def crash_at(self, at: Callable[[Write], bool], *, committed: bool = False) -> None:
        """Die at the first write `at` accepts: before it commits, or just after when
        `committed` (the database got it; the process died before hearing back)."""
        self._crash = _Crash(at, committed)

    @property
    def crashed(self) -> bool:
        return self._crashed is not None

    def restarted(self) -> MemoryStore:
        """After a crash: a store holding what was committed, for the next process to use
        (with a write log of its own, empty)."""
        assert self._crashed is not None, "the store has not crashed"
        return copy.deepcopy(self._crashed)

    async def _write(
        self, name: str, response_id: str, apply: Callable[[], _T], ordinal: int | None = None
    ) -> _T:
        """Make a write: record it, then apply it; or die at it, after applying it when the
        crash is `committed`. A round trip follows, as the database's answer does."""
        self._check_alive()
        write = Write(len(self.writes) + 1, name, response_id, ordinal)
        self.writes.append(write)
        crash = self._crash
        if crash is not None and crash.at(write):
            if crash.committed:
                apply()
            self._die()
        result = apply()
        await self._round_trip()
        return result

    async def _move_active(
        self,
        name: str,
        response_id: str,
        changes: Callable[[Row, datetime], Row],
        then: Callable[[StoredResponse], None] | None = None,
    ) -> StoredResponse | None:
        """A write that moves a response only while it is still active: the row `changes`
        makes of it (given the time now); None when there is no row or it has ended. `then`
        is what the same transaction does next with the moved row."""

        def apply() -> StoredResponse | None:
            row = self.responses.get(response_id)
            if row is None or row["status"] not in ACTIVE_STATUSES:
                return None
            row.update(changes(row, _now()))
            moved = StoredResponse.from_row(copy.deepcopy(row))
            if then is not None:
                then(moved)
            return moved

        return await self._write(name, response_id, apply)

    def _die(self) -> NoReturn:
        self._crash = None
        self._crashed = MemoryStore(
            responses=copy.deepcopy(self.responses),
            step_rows=copy.deepcopy(self.step_rows),
            conversations=copy.deepcopy(self.conversations),
        )
        raise ProcessCrash(f"crashed at write {len(self.writes)}")

    def _check_alive(self) -> None:
        if self._crashed is not None:
            raise ProcessCrash("the store is gone with its process")

    async def _round_trip(self) -> None:
        """Where a database call would suspend the caller (and may be cancelled)."""
        await asyncio.sleep(0)

    # --- KeyStore -----------------------------------------------------------------------

    async def sealing_key(self, candidate: str) -> str:
        """The first candidate offered stays the key, as the database's one row does."""
        self._check_alive()
        if self.stored_sealing_key is None:
            self.stored_sealing_key = candidate
        await self._round_trip()
        return self.stored_sealing_key

    # --- StepStore ----------------------------------------------------------------------

    async def get(self, response_id: str, owner: str) -> StoredResponse | None:
        self._check_alive()
        row = self.responses.get(response_id)
        found = None
        if row is not None and row["owner"] == owner:
            found = StoredResponse.from_row(copy.deepcopy(row))
        await self._round_trip()
        return found

    async def mark_in_progress(self, response_id: str) -> StoredResponse | None:
        return await self._move_active(
            "mark_in_progress",
            response_id,
            lambda row, now: {
                "status": ResponseStatus.IN_PROGRESS,
                "started_at": row["started_at"] or now,
                "updated_at": now,
            },
        )

    async def finish(
        self,
        response_id: str,
        outcome: Outcome,
        *,
        forgets_content: bool = False,
        appends_to_conversation: bool = False,
        background: bool = False,
    ) -> StoredResponse | None:
        return await self._move_active(
            "finish",
            response_id,
            lambda row, now: {
                "status": ResponseStatus(outcome.status),
                "output": _json(outcome.output),
                "usage": _json(outcome.usage),
                "usage_missing": outcome.usage_missing,
                "error": _json(outcome.error),
                "incomplete_details": _json(outcome.incomplete_details),
                "upstream_refusal": _json(outcome.upstream_refusal),
                "completed_at": now,
                "updated_at": now,
                "lease_owner": None,
                "lease_expires_at": None,
            },
            then=lambda final: self._after_ending(final, appends_to_conversation),
        )

    def _after_ending(self, final: StoredResponse, appends_to_conversation: bool) -> None:
        """What the transaction that ends a response does next: appends it to its
        conversation, and forgets a `store: false` one's content (`forget_content`)."""
        if appends_to_conversation:
            self._append_to_conversation(final)
        if not final.is_kept:
            self._forget_content(final.id)

    def _append_to_conversation(self, ended: StoredResponse) -> None:
        appending = (ResponseStatus.COMPLETED, ResponseStatus.INCOMPLETE)
        held = self.conversations.get(ended.conversation_id or "")
        if held is None or ended.status not in appending:
            return
        for item in [*(ended.request.get("input") or []), *(ended.output or [])]:
            if all(other["id"] != item["id"] for other in held):
                held.append(_json(item))

    async def conversation_items(self, conversation_id: str, before: int) -> list[Item]:
        self._check_alive()
        found = copy.deepcopy(self.conversations.get(conversation_id, [])[:before])
        await self._round_trip()
        return found

    def _forget_content(self, response_id: str) -> None:
        self.responses[response_id].update(request=_json(FORGOTTEN_REQUEST), output=None)
        for key in [key for key in self.step_rows if key[0] == response_id]:
            del self.step_rows[key]

    async def steps(self, response_id: str) -> list[StoredStep]:
        self._check_alive()
        found = self.step_list(response_id)
        await self._round_trip()
        return found

    async def start_step(
        self, response_id: str, ordinal: int, kind: StepKind, request: JsonObject | None
    ) -> None:
        def apply() -> None:
            if response_id not in self.responses:
                raise StoreError(f"no response {response_id} for step {ordinal}")
            if (response_id, ordinal) in self.step_rows:
                return  # ON CONFLICT DO NOTHING: a retried start changes nothing
            self.step_rows[(response_id, ordinal)] = {
                "response_id": response_id,
                "ordinal": ordinal,
                "kind": StepKind(kind),
                "status": StepStatus.IN_PROGRESS,
                "request": _json(request),
                "result": None,
                "usage": None,
                "error": None,
                "started_at": _now(),
                "completed_at": None,
            }

        await self._write("start_step", response_id, apply, ordinal)

    async def record_step_items(self, response_id: str, ordinal: int, items: list[Item]) -> None:
        def apply() -> None:
            row = self.step_rows.get((response_id, ordinal))
            if row is not None and row["status"] == StepStatus.IN_PROGRESS:
                row["result"] = _json({"items": items})

        await self._write("record_step_items", response_id, apply, ordinal)

    async def finish_step(self, response_id: str, ordinal: int, outcome: StepOutcome) -> None:
        def apply() -> None:
            row = self.step_rows.get((response_id, ordinal))
            if row is not None:
                row.update(
                    status=StepStatus(outcome.status),
                    result=_json(outcome.result),
                    usage=_json(outcome.usage),
                    error=_json(outcome.error),
                    completed_at=_now(),
                )

        await self._write("finish_step", response_id, apply, ordinal)
