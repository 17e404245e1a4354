"""Ending a response from outside its loop: a cancel (API side) or the recovery sweep
(worker side) failing it."""

from __future__ import annotations

import logging

from app.engine.chat.usage import add_usage
from app.engine.events import error_event
from app.engine.resource import response_object
from app.engine.run_state import output_of_steps, settled
from app.engine.sealing import ItemView, shown
from app.shapes import ErrorInfo, Event, Usage
from app.statuses import ResponseStatus
from app.store.queue import JobQueue
from app.store.responses import ResponseStore
from app.store.rows import Outcome, StoredResponse

log = logging.getLogger(__name__)


async def end_from_outside(
    store: ResponseStore,
    jobs: JobQueue,
    stored: StoredResponse,
    *,
    status: ResponseStatus,
    error: ErrorInfo | None = None,
    view: ItemView,
) -> StoredResponse:
    """End a running response `status` with what its steps hold, and abort its job, in one
    transaction; the row as it ends up (someone else's ending if it ended meanwhile).

    The terminal event is appended under the row lock that the worker's flushes also take,
    so the log ends with it and nothing the worker still sends gets in after. Its items
    are shown through `view` (sealed reasoning, when the request asked for it).
    """
    steps = await store.steps(stored.id)
    output = settled(output_of_steps(steps))
    usage: Usage | None = None
    for step in steps:
        usage = add_usage(usage, step.usage)
    async with store.transaction() as conn:
        outcome = Outcome(status, output, usage=usage, error=error)
        final = await store.finish(stored.id, outcome, conn)
        if final is None:  # it ended on its own meanwhile
            return await store.get_any_owner(stored.id) or stored
        if final.background and final.stream:
            number = await store.last_sequence_number(stored.id, conn) + 1
            events: list[Event] = []
            if error is not None:
                events.append(error_event(number, error["code"], error["message"]))
                number += 1
            events.append(
                {
                    "type": status.terminal_event_type,
                    "sequence_number": number,
                    "response": response_object(final, shown(output, view)),
                }
            )
            await store.append_events(stored.id, events, conn)
        if final.job_id is not None:
            await jobs.abort(final.job_id, conn)
    log.info("response ended from outside", extra={"response_id": stored.id, "status": status})
    return final
