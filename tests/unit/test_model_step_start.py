"""A model turn's step row is written while its upstream request is on its way (one commit
less before the first token), and no chunk of the turn is handled before the row is there."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from app.engine.loop import RunMode
from app.shapes import JsonObject
from app.statuses import ResponseStatus, StepKind, StepStatus
from app.store.rows import StoredResponse
from tests.support.memory_store import MemoryStore
from tests.unit.harness import Harness
from tests.unit.streams import WAIT_S, RecordingSink, assert_well_formed
from tests.unit.upstream import Hold, ScriptedUpstream, text_reply


@dataclass
class GatedStore(MemoryStore):
    """A store whose `start_step` waits for the test's `gate`; it notes what the run had sent
    (`sent_when_written`) at the moment the row was written."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    sink: RecordingSink | None = None
    sent_when_written: list[str] | None = None

    async def start_step(
        self, response_id: str, ordinal: int, kind: StepKind, request: JsonObject | None
    ) -> None:
        await self.gate.wait()
        await super().start_step(response_id, ordinal, kind, request)
        assert self.sink is not None
        self.sent_when_written = list(self.sink.types)


async def reached(event: asyncio.Event) -> None:
    async with asyncio.timeout(WAIT_S):
        await event.wait()


def gated_turn(upstream: ScriptedUpstream) -> tuple[GatedStore, StoredResponse, Hold]:
    """A store that holds the turn's step row, an inline response on it, and the point
    where its upstream request has arrived (the answer waits for the test too)."""
    reply = text_reply("Hello")
    reply.before = arrived = Hold()
    upstream.then(reply)
    store = GatedStore()
    stored = store.seed({"model": "m", "input": "Hi"}, status=ResponseStatus.IN_PROGRESS)
    return store, stored, arrived


async def test_the_request_goes_out_before_the_row_and_no_chunk_is_handled_before_it(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    store, stored, arrived = gated_turn(upstream)

    async with harness.started(stored, RunMode.INLINE, store=store) as (task, sink):
        store.sink = sink
        await reached(arrived.reached)  # the request is upstream; the row is not written
        assert store.step_list(stored.id) == []
        arrived.release.set()  # the answer streams; the run must wait for the row
        store.gate.set()
        async with asyncio.timeout(WAIT_S):
            final = await task

    assert final.status == ResponseStatus.COMPLETED
    assert store.sent_when_written == ["response.created", "response.in_progress"]
    [step] = store.step_list(stored.id)
    assert (step.kind, step.status) == (StepKind.MODEL_CALL, StepStatus.COMPLETED)
    assert_well_formed(sink.events)


async def test_a_run_cancelled_before_its_row_is_written_still_leaves_the_row_abandoned(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    store, stored, arrived = gated_turn(upstream)

    async with harness.started(stored, RunMode.INLINE, store=store) as (task, sink):
        store.sink = sink
        await reached(arrived.reached)
        task.cancel()  # the client went away
        store.gate.set()
        async with asyncio.timeout(WAIT_S):
            await asyncio.wait([task])

    assert task.cancelled()
    [step] = store.step_list(stored.id)
    assert step.status == StepStatus.CANCELLED
    assert store.response(stored.id).status == ResponseStatus.CANCELLED
