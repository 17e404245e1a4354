"""What the HTTP front end asks of the engine: accept a response (admission, idempotency,
inline runs under a lease), show it, tail its log, cancel it, delete it.

The worker's side of the same responses is `worker_side`; the two share the loop and the
store, never each other.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection

from app import ids
from app.engine.approvals import check_approval_answers
from app.engine.call_outputs import check_call_outputs
from app.engine.conversations import Conversations
from app.engine.ending import end_from_outside
from app.engine.errors import Busy, Conflict, NotFound, NotKept, RequestError
from app.engine.events import OPENING_EVENT_TYPES, EventSink
from app.engine.history import check_previous
from app.engine.input_files import FileLimits, FileReader
from app.engine.input_resolution import resolve_input
from app.engine.items import as_shown
from app.engine.key_limits import admit_response
from app.engine.loop import HAND_BACK
from app.engine.refusals import refused_blocking_create
from app.engine.resource import ResponseObject, response_object
from app.engine.run_state import output_of_steps
from app.engine.runtime import Runtime
from app.engine.sealing import shown
from app.engine.submission import Idempotency, KeyTaken, Submission, stored_request
from app.engine.tail import tail_events
from app.engine.tools.mcp import check_mcp_urls
from app.engine.waiting import wait_or_stop
from app.logs import current_response_id
from app.shapes import Event, Item, JsonObject
from app.statuses import ResponseStatus
from app.store.db import connection_in_turn
from app.store.queue import BACKGROUND_QUEUE, FLEX_QUEUE
from app.store.rows import NewResponse, StoredResponse

log = logging.getLogger(__name__)

# Beyond any position on a conversation: `conversation_items` below it are all of them.
ALL_POSITIONS = 2**31 - 1


class ApiSide:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.settings = runtime.settings
        self.files = FileReader(FileLimits.of(self.settings))
        self.conversations = Conversations(runtime, self.files)
        self.inline_running = 0  # admission control: inline responses this process runs
        # Set when the process starts shutting down: open streams wind up and close.
        self.stopping = asyncio.Event()

    # --- accepting -------------------------------------------------------------------

    def _new_row(
        self,
        submission: Submission,
        *,
        status: ResponseStatus,
        lease_owner: str | None = None,
        created_at: datetime | None = None,
    ) -> NewResponse:
        request = submission.request
        return NewResponse(
            id=ids.response_id(),
            owner=submission.owner,
            status=status,
            request=stored_request(request, submission.items, submission.carried),
            model=request.model,
            service_tier=submission.service_tier,
            background=request.background,
            stream=request.stream,
            previous_response_id=request.previous_response_id,
            conversation_id=request.conversation_id,
            lease_owner=lease_owner,
            lease_ttl_s=self.settings.inline_lease_s,
            created_at=created_at,
        )

    async def create_inline(self, submission: Submission) -> StoredResponse:
        """Insert the row of a response this process will run now, holding its lease.

        Reserves one of this process's inline slots; its run (`start_inline`) gives it back.
        """
        submission, new = await self._admit_inline(submission)
        try:
            # Finished even if the caller is cancelled meanwhile, as the store's own queries
            # are: a statement cancelled mid-way can cancel the connection's next one.
            stored = await asyncio.shield(self._insert_admitted(submission, new))
        except BaseException:
            self._give_back_slot()
            raise
        return stored

    async def _admit_inline(
        self, submission: Submission, *, created_at: datetime | None = None
    ) -> tuple[Submission, NewResponse]:
        """Take one of this process's inline slots for a create, check what it references,
        and make its row (running, under this process's lease); the slot is given back if
        the create is refused here."""
        self._take_slot()
        try:
            submission = await self._check_references(submission)
        except BaseException:
            self._give_back_slot()
            raise
        new = self._new_row(
            submission,
            status=ResponseStatus.IN_PROGRESS,
            lease_owner=self.runtime.instance_id,
            created_at=created_at,
        )
        return submission, new

    async def start_inline_stream(
        self, submission: Submission, sink: EventSink
    ) -> tuple[StoredResponse, asyncio.Task[StoredResponse]]:
        """Accept a streaming create this process runs now, and start its run: the row, once
        it has committed, and the task running it.

        A create whose insert refuses nothing (`_insert_refuses_nothing`) starts its run, and
        so its first upstream request, while its row is being inserted: the row's commit (a
        WAL flush) is then off the time to first token. Nothing of it is shown or written
        before the row has committed: its events wait in `sink` for a writer the caller
        starts after this returns, and its writes wait for the insert (`WritesAfterRow`). If
        the insert fails, the run stops unrecorded and its upstream request is closed. A
        create whose insert may refuse it (a taken key, a limit) asks the model nothing first.
        """
        if not _insert_refuses_nothing(submission):
            stored = await self.create_inline(submission)
            return stored, self.start_inline(stored, sink)
        submission, new = await self._admit_inline(submission, created_at=datetime.now(UTC))
        # The insert's task first, the run's after (tasks start in that order): the other
        # order, the upstream's request first, gave a slower first token in our timings.
        inserting = asyncio.ensure_future(self._insert_admitted(submission, new))
        run = self.start_inline(StoredResponse.as_inserted(new), sink, row=inserting)
        try:
            # Finished even if the caller is cancelled meanwhile, as in `create_inline`.
            stored = await asyncio.shield(inserting)
        except BaseException:
            run.cancel(HAND_BACK)
            run.add_done_callback(_ended_unseen)
            raise
        return stored, run

    def _take_slot(self) -> None:
        # Checked and taken with no await in between: a burst cannot slip past the limit.
        if self.inline_running >= self.settings.max_inline_per_process:
            raise Busy(
                "Too many responses are running on this server; retry shortly.", retry_after_s=1
            )
        self.inline_running += 1

    def _give_back_slot(self, _: object = None) -> None:
        self.inline_running -= 1

    async def _insert_admitted(self, submission: Submission, new: NewResponse) -> StoredResponse:
        """The row of an admitted inline create: in a burst it waits its turn for a pooled
        connection rather than fail (`connection_in_turn`)."""
        in_turn = connection_in_turn(
            self.store.pool, self.settings.db_run_wait_s, self._database_reachable
        )
        async with in_turn as conn:
            if _insert_refuses_nothing(submission):
                return await self.store.insert(new, conn)  # one statement: no BEGIN, COMMIT
            async with conn.transaction():
                await self._admit_owner(submission, conn)
                return await self._insert(submission, new, conn)

    def _database_reachable(self) -> bool:
        return self.runtime.notifier.connected

    async def _insert(
        self, submission: Submission, new: NewResponse, conn: AsyncConnection
    ) -> StoredResponse:
        """Insert the row in the caller's transaction, with its place on its conversation
        and its claim on its Idempotency-Key."""
        stored = await self.store.insert(await self.conversations.join(new, conn), conn)
        await self._claim(submission, stored.id, conn)
        return stored

    async def _claim(self, submission: Submission, response_id: str, conn: AsyncConnection) -> None:
        idempotency = submission.idempotency
        if idempotency is None:
            return
        claimed = await self.store.claim_idempotency_key(
            submission.owner,
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

        The same key with a different body is a conflict: it names another request.
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

    async def create_deferred(self, submission: Submission) -> StoredResponse:
        """Insert a `queued` row and defer its job in one transaction: neither exists alone.

        A background stream's log starts here with `response.created` and `response.queued`,
        so a client tailing it sees the response before any worker picks it up.
        """
        submission = await self._check_references(submission)
        queue = FLEX_QUEUE if submission.service_tier == "flex" else BACKGROUND_QUEUE
        if queue == FLEX_QUEUE:
            await self._admit_flex()
        async with self.store.transaction() as conn:
            if queue == BACKGROUND_QUEUE:
                await self._admit_background(submission.owner, conn)
            await self._admit_owner(submission, conn)
            new = self._new_row(submission, status=ResponseStatus.QUEUED)
            # The job first, so that the row is written once, with its job id; no worker sees
            # either before the commit.
            job_id = await self.runtime.jobs.defer_response(new.id, queue, conn)
            stored = await self._insert(submission, dataclasses.replace(new, job_id=job_id), conn)
            if stored.background and stored.stream:
                snapshot = response_object(stored, [])
                opening: list[Event] = [
                    {"type": event_type, "sequence_number": number, "response": snapshot}
                    for number, event_type in enumerate(OPENING_EVENT_TYPES)
                ]
                await self.store.start_event_log(stored.id, opening, conn)
        log.info("response queued", extra={"response_id": stored.id, "queue": queue})
        return stored

    async def _admit_background(self, owner: str, conn: AsyncConnection) -> None:
        total, mine = await self.store.count_queued_background(owner, conn)
        if total >= self.settings.max_queued_background or mine >= self.settings.max_queued_per_key:
            raise Busy("Too many background responses are queued; retry later.", retry_after_s=5)

    async def _admit_owner(self, submission: Submission, conn: AsyncConnection) -> None:
        await admit_response(self.runtime.api_keys, submission.owner, submission.max_running, conn)

    async def _admit_flex(self) -> None:
        depth = await self.store.queue_depth(FLEX_QUEUE)
        if depth >= self.settings.flex_max_queue_depth:
            raise Busy(
                "Resource Unavailable: the flex queue is full. Retry later, or use the "
                "default service tier."
            )

    async def _check_references(self, submission: Submission) -> Submission:
        """What the request names must exist (its previous response, its tools' names, the
        items it references, the keys of its sealed reasoning, the approval requests it
        answers); the submission with its input resolved (`resolve_input`)."""
        request = submission.request
        context = request.previous_response_id or request.conversation_id
        if not submission.items and not context and submission.carried is None:
            # Nothing to send the model: an upstream would refuse the empty conversation.
            raise RequestError(
                "Missing required parameter: 'input'.",
                param="input",
                code="missing_required_parameter",
            )
        self.runtime.tools.check_client_tools(request.tools)
        check_mcp_urls(request.tools, self.settings.mcp_allowed_prefixes)
        previous = None
        if submission.carried is None:  # carried: the previous response is not looked up
            previous = await self.check_previous(submission.owner, request.previous_response_id)
        items = await resolve_input(
            submission.items, submission.owner, self.store, self.runtime.sealing_keys, self.files
        )
        await check_call_outputs(items, submission.carried, previous, self.store)
        conversation_id = request.conversation_id

        async def conversation_items() -> list[Item]:
            assert conversation_id is not None
            await self.conversations.retrieve(submission.owner, conversation_id)  # or a 404
            return await self.store.conversation_items(conversation_id, ALL_POSITIONS)

        await check_approval_answers(
            items,
            request.tools,
            owner=submission.owner,
            previous_response_id=request.previous_response_id,
            reader=self.store,
            conversation=conversation_items if conversation_id else None,
        )
        return dataclasses.replace(submission, items=items)

    async def check_previous(self, owner: str, previous_id: str | None) -> StoredResponse | None:
        """The previous response a create names (`history.check_previous`)."""
        return await check_previous(self.store, owner, previous_id)

    # --- running inline --------------------------------------------------------------

    def start_inline(
        self,
        stored: StoredResponse,
        sink: EventSink,
        *,
        row: asyncio.Future[StoredResponse] | None = None,
    ) -> asyncio.Task[StoredResponse]:
        """Run the loop here, in a task of its own, renewing the lease this process holds;
        however the task ends (even cancelled before it began), it gives back the inline slot
        its create took. `row`: the row's insert, if it has not committed yet."""
        task = asyncio.create_task(self._run_inline(stored, sink, row), name=f"inline {stored.id}")
        task.add_done_callback(self._give_back_slot)
        return task

    async def run_inline(self, stored: StoredResponse, sink: EventSink) -> StoredResponse:
        """`start_inline`, awaited."""
        return await self.start_inline(stored, sink)

    async def _run_inline(
        self, stored: StoredResponse, sink: EventSink, row: asyncio.Future[StoredResponse] | None
    ) -> StoredResponse:
        current_response_id.set(stored.id)  # this task's own context: its logs name it
        running = asyncio.current_task()
        assert running is not None
        renewer = asyncio.create_task(
            self._renew_lease(stored.id, running, row), name=f"lease {stored.id}"
        )
        try:
            return await self.runtime.loop.run(stored, sink, row=row)
        finally:
            renewer.cancel()

    async def _renew_lease(
        self,
        response_id: str,
        running: asyncio.Task[Any],
        row: asyncio.Future[StoredResponse] | None,
    ) -> None:
        ttl = self.settings.inline_lease_s
        if row is not None:
            # No lease before the row is there to hold it; none at all if it never is.
            await asyncio.wait([row])
            if row.cancelled() or row.exception() is not None:
                return
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                held = await self.store.renew_lease(response_id, self.runtime.instance_id, ttl)
            except Exception:
                # A missed renewal is retried next period; the lease outlives two misses.
                log.warning("could not renew the lease", exc_info=True)
                continue
            if not held:
                # It lapsed and a worker took the response over: two runs must not race.
                log.warning("lost the lease; stopping the inline run")
                running.cancel(HAND_BACK)
                return

    # --- showing ---------------------------------------------------------------------

    async def get(self, owner: str, response_id: str) -> StoredResponse:
        _check_id(response_id)
        return _found(response_id, await self.store.get(response_id, owner))

    def present_accepted(self, stored: StoredResponse) -> ResponseObject:
        """The Response object of a background response just accepted: as its row was
        written, with nothing in its output yet (what a worker has done since is for the next
        GET to show), so its create reads nothing back."""
        return response_object(stored, [])

    async def present(self, stored: StoredResponse) -> ResponseObject:
        """The Response object of a row: its final output, or what its steps hold so far,
        each item shown as the request asked (sealed reasoning)."""
        view = await self.runtime.sealing_keys.view_for(stored.request, stored.owner)
        if stored.is_terminal and stored.output is not None:
            return response_object(stored, shown(stored.output, view))
        steps = await self.store.steps(stored.id)
        return response_object(stored, shown(output_of_steps(steps), view))

    async def answer_blocking(self, final: StoredResponse) -> ResponseObject:
        """What a request that waited for a response gets once it has ended: the Response, or
        the upstream's refusal of a blocking create as an error (`app.engine.refusals`)."""
        refused = refused_blocking_create(final)
        if refused is not None:
            raise refused
        if final.is_forgotten:
            raise self.not_kept(final)
        return await self.present(final)

    def not_kept(self, final: StoredResponse) -> RequestError:
        """What a create retried with the key of an ended `store: false` response learns."""
        return refused_blocking_create(final) or NotKept(
            f"The response '{final.id}' made for this Idempotency-Key has ended "
            f"({final.status}), but it was created with 'store': false, so its result was not "
            "kept. Send the request with a new Idempotency-Key to run it again.",
            response_id=final.id,
        )

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

    def tail(self, stored: StoredResponse, after: int) -> AsyncIterator[list[Event] | None]:
        """The response's logged events after `after`, live until its terminal event, in
        batches as read (None: a keep-alive is due; see `tail_events`)."""
        if not (stored.background and stored.stream):
            raise RequestError(
                "This response was not created with background=true and stream=true, so it "
                "has no event stream to resume.",
                param="stream",
                code="stream_not_available",
            )
        idle_s = min(self.settings.sse_keepalive_s, self.settings.tail_recheck_s)
        return tail_events(
            self.store,
            self.runtime.notifier,
            stored.id,
            after=after,
            idle_s=idle_s,
            stop=self.stopping,
        )

    async def input_items(
        self, owner: str, response_id: str, *, limit: int, order: str, after: str | None
    ) -> JsonObject:
        """A page of the response's input items (as stored, each with its id)."""
        stored = await self.get(owner, response_id)
        items = [as_shown(item) for item in stored.request.get("input") or []]
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

    # --- stopping --------------------------------------------------------------------

    async def cancel(self, owner: str, response_id: str) -> ResponseObject:
        """Cancel a background response; idempotent, and a finished one is left as it is."""
        return await self._cancel(await self.get(owner, response_id))

    async def delete(self, owner: str, response_id: str) -> None:
        await self._delete(await self.get(owner, response_id))

    # The operator console's admins act on any owner's responses, by the same rules.

    async def get_for_admin(self, response_id: str) -> StoredResponse:
        _check_id(response_id)
        return _found(response_id, await self.store.get_any_owner(response_id))

    async def cancel_for_admin(self, response_id: str) -> ResponseObject:
        return await self._cancel(await self.get_for_admin(response_id))

    async def delete_for_admin(self, response_id: str) -> None:
        await self._delete(await self.get_for_admin(response_id))

    async def _cancel(self, stored: StoredResponse) -> ResponseObject:
        if not stored.background:
            raise RequestError("Cannot cancel a synchronous response.", param="response_id")
        if not stored.is_terminal:
            stored = await self._end(stored)
        return await self.present(stored)

    async def _delete(self, stored: StoredResponse) -> None:
        if not stored.is_terminal:
            await self._end(stored)
        if not await self.store.delete(stored.id, stored.owner):
            raise NotFound(f"Response with id '{stored.id}' not found.", param="response_id")
        log.info("response deleted", extra={"response_id": stored.id})

    async def _end(self, stored: StoredResponse) -> StoredResponse:
        view = await self.runtime.sealing_keys.view_for(stored.request, stored.owner)
        return await end_from_outside(
            self.store, self.runtime.jobs, stored, status=ResponseStatus.CANCELLED, view=view
        )


def _insert_refuses_nothing(submission: Submission) -> bool:
    """The row of this inline create is one insert that refuses nothing (no Idempotency-Key
    to claim, no limit on its key's running responses to count, no conversation to join):
    one statement, and only a database failure can stop it."""
    return (
        submission.idempotency is None
        and submission.max_running is None
        and submission.request.conversation_id is None
    )


def _ended_unseen(run: asyncio.Task[StoredResponse]) -> None:
    # A run stopped because its row was never written: the create's caller has the insert's
    # error; the run's own (`RowNotWritten`, or its cancellation) is taken here, unreported.
    if not run.cancelled():
        run.exception()


def _check_id(response_id: str) -> None:
    if not ids.is_well_formed(response_id):
        # Not one Ferry could have made (a NUL, 10,000 characters): it names nothing, is not
        # looked up, and is not echoed back.
        raise NotFound("No response has that id.", param="response_id")


def _found(response_id: str, stored: StoredResponse | None) -> StoredResponse:
    if stored is None or not stored.is_kept:  # `store: false`: never retrievable
        raise NotFound(f"Response with id '{response_id}' not found.", param="response_id")
    return stored
