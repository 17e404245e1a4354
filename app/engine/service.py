"""What the front end and the worker ask of the engine: accept, run, show, cancel, delete.

Neither touches the store directly; they go through this service, so calls go one way:
http -> engine -> store and worker -> engine -> store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from app import ids
from app.config import Settings
from app.engine.cut_items import cut_off_items
from app.engine.errors import NotFound, RequestError
from app.engine.event_log import EventLogSink
from app.engine.events import TERMINAL_EVENT_BY_STATUS, EventSink
from app.engine.loop import HAND_BACK, ResponseLoop
from app.engine.request import CreateResponseRequest
from app.engine.resource import response_object
from app.engine.run_state import output_of_steps
from app.engine.sinks import DiscardSink
from app.engine.tail import tail_events
from app.engine.tools.mcp import check_mcp_urls
from app.engine.usage import add_usage
from app.engine.waiting import wait_or_stop
from app.logs import current_response_id
from app.store.notify import EventNotifier
from app.store.queue import BACKGROUND_QUEUE, FLEX_QUEUE, RUN_RESPONSE_TASK, JobQueue
from app.store.responses import NewResponse, ResponseStore, StoredResponse
from app.store.retention import RetentionReport, apply_retention

log = logging.getLogger(__name__)


class RateLimited(RequestError):
    status_code = 429
    error_type = "rate_limit_exceeded"


class Conflict(RequestError):
    status_code = 409


class KeyTaken(Exception):
    """Another request claimed the same Idempotency-Key first; reattach to its response."""


@dataclass(frozen=True)
class Idempotency:
    key: str
    digest: str  # of the request body: the same key with another body is a conflict

    @classmethod
    def of(cls, key: str | None, body: Any) -> Idempotency | None:
        if not key:
            return None
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return cls(key=key, digest=hashlib.sha256(canonical.encode()).hexdigest())


class Unavailable(RequestError):
    """The service is up but cannot take the request now (e.g. a held request timed out)."""

    error_type = "server_error"


def owner_of(api_key: str | None) -> str:
    """Who owns a response: a digest of the API key, so keys never reach the database."""
    if not api_key:
        return ""
    return hashlib.sha256(api_key.encode()).hexdigest()[:32]


def stored_request(request: CreateResponseRequest, items: list[dict[str, Any]]) -> dict[str, Any]:
    """The request as kept on the row: every parameter, with `input` as normalised items."""
    data = request.model_dump(mode="json", by_alias=True, exclude={"input"})
    data["input"] = items
    return data


class ResponsesService:
    def __init__(
        self,
        store: ResponseStore,
        loop: ResponseLoop,
        settings: Settings,
        instance_id: str,
        *,
        jobs: JobQueue | None = None,
        notifier: EventNotifier | None = None,
    ) -> None:
        self.store = store
        self.loop = loop
        self.settings = settings
        # Names this process as the holder of the leases on the inline work it runs.
        self.instance_id = instance_id
        self.jobs = jobs
        self.notifier = notifier
        self.inline_running = 0  # admission control: inline responses this process runs
        # Set when the process starts shutting down: open streams wind up and close.
        self.stopping = asyncio.Event()

    # --- accepting -------------------------------------------------------------------

    def _new_row(
        self,
        owner: str,
        request: CreateResponseRequest,
        items: list[dict[str, Any]],
        *,
        status: str,
        lease_owner: str | None = None,
    ) -> NewResponse:
        return NewResponse(
            id=ids.response_id(),
            owner=owner,
            status=status,
            request=stored_request(request, items),
            model=request.model,
            service_tier=request.service_tier or "auto",
            background=request.background,
            stream=request.stream,
            previous_response_id=request.previous_response_id,
            lease_owner=lease_owner,
            lease_ttl_s=self.settings.inline_lease_s,
        )

    async def create_inline(
        self,
        owner: str,
        request: CreateResponseRequest,
        items: list[dict[str, Any]],
        idempotency: Idempotency | None = None,
    ) -> StoredResponse:
        """Insert the row of a response this process will run now, holding its lease.

        Reserves one of this process's inline slots; `run` gives it back.
        """
        if self.inline_running >= self.settings.max_inline_per_process:
            raise RateLimited(
                "Too many responses are running on this server; retry shortly.",
                code="rate_limit_exceeded",
                headers={"Retry-After": "1"},
            )
        await self._check_references(owner, request)
        new = self._new_row(
            owner, request, items, status="in_progress", lease_owner=self.instance_id
        )
        async with self.store.transaction() as conn:
            stored = await self.store.insert(new, conn)
            await self._claim(owner, idempotency, stored.id, conn)
        self.inline_running += 1
        return stored

    async def _claim(
        self, owner: str, idempotency: Idempotency | None, response_id: str, conn: Any
    ) -> None:
        if idempotency is None:
            return
        claimed = await self.store.claim_idempotency_key(
            owner,
            idempotency.key,
            idempotency.digest,
            response_id,
            self.settings.idempotency_ttl_s,
            conn,
        )
        if not claimed:
            raise KeyTaken  # rolls the insert back: the first request's response stands

    async def find_by_idempotency(
        self, owner: str, idempotency: Idempotency | None
    ) -> StoredResponse | None:
        """The response an earlier create with this key made, if the key is still live.

        The same key with a different body is a 409: it names another request.
        """
        if idempotency is None:
            return None
        found = await self.store.find_idempotency_key(
            owner, idempotency.key, self.settings.idempotency_ttl_s
        )
        if found is None:
            return None
        digest, response_id = found
        if digest != idempotency.digest:
            raise Conflict(
                "This Idempotency-Key was already used with a different request body.",
                param="Idempotency-Key",
                code="idempotency_key_reused",
            )
        return await self.store.get(response_id, owner)

    async def create_deferred(
        self,
        owner: str,
        request: CreateResponseRequest,
        items: list[dict[str, Any]],
        idempotency: Idempotency | None = None,
    ) -> StoredResponse:
        """Insert a `queued` row and defer its job in one transaction: neither exists alone.

        A background stream's log starts here with `response.created` and `response.queued`,
        so a client tailing it sees the response before any worker picks it up.
        """
        assert self.jobs is not None
        await self._check_references(owner, request)
        queue = FLEX_QUEUE if request.service_tier == "flex" else BACKGROUND_QUEUE
        if queue == FLEX_QUEUE:
            await self._admit_flex()
        else:
            await self._admit_background(owner)
        async with self.store.transaction() as conn:
            stored = await self.store.insert(
                self._new_row(owner, request, items, status="queued"), conn
            )
            await self._claim(owner, idempotency, stored.id, conn)
            if stored.background and stored.stream:
                snapshot = response_object(stored, [])
                opening = [
                    {"type": "response.created", "sequence_number": 0, "response": snapshot},
                    {"type": "response.queued", "sequence_number": 1, "response": snapshot},
                ]
                await self.store.append_events(stored.id, opening, conn)
            job_id = await self.jobs.defer_response(stored.id, queue, conn)
            await self.store.set_job_id(stored.id, job_id, conn)
        log.info("response queued", extra={"response_id": stored.id, "queue": queue})
        return dataclasses.replace(stored, job_id=job_id)

    async def _admit_background(self, owner: str) -> None:
        total, mine = await self.store.count_queued_background(owner)
        if total >= self.settings.max_queued_background or mine >= self.settings.max_queued_per_key:
            raise RateLimited(
                "Too many background responses are queued; retry later.",
                code="rate_limit_exceeded",
                headers={"Retry-After": "5"},
            )

    async def _admit_flex(self) -> None:
        depth = await self.store.queue_depth(FLEX_QUEUE)
        if depth >= self.settings.flex_max_queue_depth:
            raise RateLimited(
                "Resource Unavailable: the flex queue is full. Retry later, or use the "
                "default service tier.",
                code="rate_limit_exceeded",
            )

    async def _check_references(self, owner: str, request: CreateResponseRequest) -> None:
        """What the request names must exist: its previous response, its tools' names."""
        self.loop.tools.check_client_tools(request.tools)
        check_mcp_urls(request.tools, self.settings.mcp_allowed_prefixes)
        await self._check_previous(owner, request.previous_response_id)

    async def _check_previous(self, owner: str, previous_id: str | None) -> None:
        if previous_id is None:
            return
        previous = await self.store.get(previous_id, owner)
        if previous is None:
            raise RequestError(
                f"Previous response with id '{previous_id}' not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        if not previous.is_terminal:
            raise RequestError(
                f"Previous response with id '{previous_id}' is still {previous.status}; "
                "wait until it has finished.",
                param="previous_response_id",
                code="previous_response_not_finished",
            )

    # --- running ---------------------------------------------------------------------

    async def run(self, stored: StoredResponse, sink: EventSink) -> StoredResponse:
        """Run the loop inline; while it runs, keep renewing the lease this process holds."""
        if stored.lease_owner != self.instance_id:
            return await self.loop.run(stored, sink)
        running = asyncio.current_task()
        assert running is not None
        renewer = asyncio.create_task(
            self._renew_lease(stored.id, running), name=f"lease {stored.id}"
        )
        try:
            return await self.loop.run(stored, sink)
        finally:
            renewer.cancel()
            self.inline_running -= 1

    async def _renew_lease(self, response_id: str, running: asyncio.Task[Any]) -> None:
        ttl = self.settings.inline_lease_s
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                held = await self.store.renew_lease(response_id, self.instance_id, ttl)
            except Exception:
                # A missed renewal is retried next period; the lease outlives two misses.
                log.warning("could not renew the lease", exc_info=True)
                continue
            if not held:
                # It lapsed and a worker took the response over: two runs must not race.
                log.warning("lost the lease; stopping the inline run")
                running.cancel(HAND_BACK)
                return

    async def run_deferred(self, response_id: str) -> None:
        """Run (or resume) a response in a worker; its event log is the sink when it streams.

        Whatever earlier attempts finished is kept: the loop carries on after the last
        finished step. A cancellation (the worker shutting down) hands the response back
        for another attempt instead of ending it.
        """
        token = current_response_id.set(response_id)
        try:
            stored = await self.store.get_any_owner(response_id)
            if stored is None or stored.is_terminal:
                log.info("nothing to run: response gone or already ended")
                return
            options = {"resume": True, "hand_back_on_cancel": True, "redo_cut_turns": True}
            if not (stored.background and stored.stream):
                await self.loop.run(stored, DiscardSink(), **options)
                return
            sink = EventLogSink(self.store, stored.id, self.settings.event_flush_interval_s)
            try:
                next_number = await self._close_cut_items(stored.id, sink)
                await self.loop.run(stored, sink, next_sequence_number=next_number, **options)
            finally:
                await asyncio.shield(sink.aclose())
        finally:
            current_response_id.reset(token)

    async def _close_cut_items(self, response_id: str, sink: EventLogSink) -> int:
        """Close the items an earlier attempt left open in the log; the next number to use."""
        logged = await self.store.events_after(response_id, -1)
        next_number = logged[-1]["sequence_number"] + 1 if logged else 0
        for index, item in cut_off_items(logged):
            await sink.send(
                {
                    "type": "response.output_item.done",
                    "sequence_number": next_number,
                    "output_index": index,
                    "item": item,
                }
            )
            next_number += 1
        await sink.flush()
        return next_number

    # --- showing ---------------------------------------------------------------------

    async def get(self, owner: str, response_id: str) -> StoredResponse:
        stored = await self.store.get(response_id, owner)
        if stored is None:
            raise NotFound(f"Response with id '{response_id}' not found.", param="response_id")
        return stored

    async def present(self, stored: StoredResponse) -> dict[str, Any]:
        """The Response object of a row: its final output, or what its steps hold so far."""
        if stored.is_terminal and stored.output is not None:
            return response_object(stored, stored.output)
        steps = await self.store.steps(stored.id)
        return response_object(stored, output_of_steps(steps))

    async def wait_until_terminal(
        self, stored: StoredResponse, timeout_s: float
    ) -> StoredResponse | None:
        """Poll the row until it ends; None if it has not ended within `timeout_s`, or the
        process is stopping."""
        deadline = time.monotonic() + timeout_s
        while not stored.is_terminal:
            if time.monotonic() >= deadline or self.stopping.is_set():
                return None
            pause = min(self.settings.flex_poll_interval_s, max(deadline - time.monotonic(), 0))
            await wait_or_stop(asyncio.sleep(pause), self.stopping, pause + 1)
            stored = await self.store.get(stored.id, stored.owner) or stored
        return stored

    def tail(self, stored: StoredResponse, after: int) -> AsyncIterator[dict[str, Any] | None]:
        """The response's logged events after `after`, live until its terminal event."""
        if not (stored.background and stored.stream):
            raise RequestError(
                "This response was not created with background=true and stream=true, so it "
                "has no event stream to resume.",
                param="stream",
                code="stream_not_available",
            )
        assert self.notifier is not None
        idle_s = min(self.settings.sse_keepalive_s, self.settings.tail_recheck_s)
        return tail_events(
            self.store, self.notifier, stored.id, after=after, idle_s=idle_s, stop=self.stopping
        )

    async def input_items(
        self, owner: str, response_id: str, *, limit: int, order: str, after: str | None
    ) -> dict[str, Any]:
        """A page of the response's input items (as stored, each with its id)."""
        stored = await self.get(owner, response_id)
        items = list(stored.request.get("input") or [])
        if order == "desc":
            items.reverse()
        if after is not None:
            positions = [i for i, item in enumerate(items) if item.get("id") == after]
            if not positions:
                raise RequestError(
                    f"No input item with id '{after}' in response '{response_id}'.",
                    param="after",
                    code="invalid_value",
                )
            items = items[positions[0] + 1 :]
        page = items[:limit]
        return {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > limit,
        }

    # --- housekeeping ------------------------------------------------------------------

    async def apply_retention(self) -> RetentionReport:
        """Delete what has outlived RETENTION_DAYS / EVENT_RETENTION_HOURS; nothing running."""
        return await apply_retention(
            self.store.pool,
            response_age_s=self.settings.retention_days * 86400,
            event_age_s=self.settings.event_retention_hours * 3600,
        )

    # --- stopping --------------------------------------------------------------------

    async def cancel(self, owner: str, response_id: str) -> dict[str, Any]:
        """Cancel a background response; idempotent, and a finished one is left as it is."""
        stored = await self.get(owner, response_id)
        if not stored.background:
            raise RequestError(
                "Cannot cancel a synchronous response.", param="response_id", code=None
            )
        if not stored.is_terminal:
            stored = await self._stop(stored)
        return await self.present(stored)

    async def delete(self, owner: str, response_id: str) -> None:
        stored = await self.get(owner, response_id)
        if not stored.is_terminal:
            await self._stop(stored)
        if not await self.store.delete(response_id, owner):
            raise NotFound(f"Response with id '{response_id}' not found.", param="response_id")
        log.info("response deleted", extra={"response_id": response_id})

    async def _stop(
        self,
        stored: StoredResponse,
        *,
        status: str = "cancelled",
        error: dict[str, Any] | None = None,
        abort_job: bool = True,
    ) -> StoredResponse:
        """End a running response from outside its loop (`cancelled`, or `failed` by the
        recovery sweep) and abort its job, in one transaction.

        The terminal event is appended under the row lock that the worker's flushes also
        take, so the log ends with it and nothing the worker still sends gets in after.
        """
        steps = await self.store.steps(stored.id)
        output = output_of_steps(steps)
        usage = None
        for step in steps:
            usage = add_usage(usage, step.usage)
        async with self.store.transaction() as conn:
            final = await self.store.finish(
                stored.id, status=status, output=output, usage=usage, error=error, conn=conn
            )
            if final is None:  # it ended on its own meanwhile
                return await self.store.get_any_owner(stored.id) or stored
            if final.background and final.stream:
                number = await self.store.last_sequence_number(stored.id, conn) + 1
                events = []
                if error is not None:
                    events.append(
                        {
                            "type": "error",
                            "sequence_number": number,
                            "error": {**error, "type": "server_error", "param": None},
                        }
                    )
                    number += 1
                events.append(
                    {
                        "type": TERMINAL_EVENT_BY_STATUS[status],
                        "sequence_number": number,
                        "response": response_object(final, output),
                    }
                )
                await self.store.append_events(stored.id, events, conn)
            if abort_job and final.job_id is not None and self.jobs is not None:
                await self.jobs.abort(final.job_id, conn)
        log.info("response ended from outside", extra={"response_id": stored.id, "status": status})
        return final

    # --- recovery --------------------------------------------------------------------

    async def recover(self) -> dict[str, int]:
        """One sweep: retry the jobs of dead workers, stop overrunning jobs, and hand inline
        responses whose API process died over to a worker. Run by a periodic task."""
        assert self.jobs is not None
        report = {"retried": 0, "gave_up": 0, "overran": 0, "handed_over": 0}
        for job in await self.jobs.stalled_response_jobs(self.settings.stall_threshold_s):
            response_id = str(job.task_kwargs["response_id"])
            if job.attempts + 1 >= self.settings.max_attempts:
                await self._fail(
                    response_id, "max_attempts", f"gave up after {job.attempts + 1} attempts"
                )
                report["gave_up"] += 1
            # Retried even when given up on: the attempt finds the response ended and stops,
            # and the job leaves `doing`.
            await self.jobs.retry(job)
            report["retried"] += 1
            log.warning("retrying the job of a dead worker", extra={"response_id": response_id})
        for job_id, response_id in await self.store.overrunning_jobs(
            RUN_RESPONSE_TASK, self.settings.max_run_time_s
        ):
            message = f"the response ran longer than {self.settings.max_run_time_s:g}s"
            await self._fail(response_id, "timeout", message)
            report["overran"] += 1
            log.warning(
                "stopped an overrunning job", extra={"response_id": response_id, "job_id": job_id}
            )
        for response_id in await self.store.lapsed_inline_leases():
            if await self._hand_over(response_id):
                report["handed_over"] += 1
        return report

    async def _fail(self, response_id: str, code: str, message: str) -> None:
        stored = await self.store.get_any_owner(response_id)
        if stored is not None and not stored.is_terminal:
            await self._stop(stored, status="failed", error={"code": code, "message": message})

    async def _hand_over(self, response_id: str) -> bool:
        """Give an inline response whose API process died to a worker, to resume it."""
        assert self.jobs is not None
        async with self.store.transaction() as conn:
            if not await self.store.take_over_lease(response_id, conn):
                return False
            job_id = await self.jobs.defer_response(response_id, BACKGROUND_QUEUE, conn)
            await self.store.set_job_id(response_id, job_id, conn)
        log.warning("inline response handed over to a worker", extra={"response_id": response_id})
        return True
