"""A run that starts while its response row is still being inserted (a streaming create asks
the model meanwhile): it writes nothing before the row has committed, and if the insert
fails it stops having written nothing, its upstream request closed."""

from __future__ import annotations

import asyncio

import pytest

from app.engine.step_store import RowNotWritten
from app.statuses import ResponseStatus, StepKind, StepStatus
from app.store.rows import StoredResponse
from tests.unit.harness import Harness
from tests.unit.streams import WAIT_S, RecordingSink, assert_well_formed
from tests.unit.upstream import Hold, ScriptedUpstream, text_reply


def held_reply(upstream: ScriptedUpstream) -> Hold:
    """The next answer waits at its start until the test releases it; `reached` says the
    request has arrived."""
    reply = text_reply("Hello there")
    reply.before = arrived = Hold()
    upstream.then(reply)
    return arrived


async def started_before_its_row(
    harness: Harness, row: asyncio.Future[StoredResponse]
) -> tuple[StoredResponse, asyncio.Task[StoredResponse], RecordingSink]:
    stored = harness.seed({"model": "m", "input": "Hi"})
    sink = RecordingSink()
    task = asyncio.create_task(harness.loop().run(stored, sink, row=row))
    return stored, task, sink


async def test_the_model_is_asked_before_the_row_commits_and_nothing_is_written_before_it(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    arrived = held_reply(upstream)
    row: asyncio.Future[StoredResponse] = asyncio.get_running_loop().create_future()
    stored, task, sink = await started_before_its_row(harness, row)

    async with asyncio.timeout(WAIT_S):
        await arrived.reached.wait()  # the request is upstream; the row is not there yet
    arrived.release.set()  # the answer streams in: the run must wait for the row
    for _ in range(10):
        await asyncio.sleep(0)  # a chance to get ahead of the row, were it allowed to
    assert sink.types == ["response.created", "response.in_progress"]
    assert harness.store.writes == []

    row.set_result(stored)
    async with asyncio.timeout(WAIT_S):
        final = await task

    assert final.status == ResponseStatus.COMPLETED
    assert harness.store.writes[0].name == "start_step"
    [step] = harness.store.step_list(stored.id)
    assert (step.kind, step.status) == (StepKind.MODEL_CALL, StepStatus.COMPLETED)
    assert_well_formed(sink.events)


@pytest.mark.parametrize("how", ["failed", "cancelled"])
async def test_a_run_whose_row_is_never_written_stops_having_written_nothing(
    harness: Harness, upstream: ScriptedUpstream, how: str
) -> None:
    arrived = held_reply(upstream)
    row: asyncio.Future[StoredResponse] = asyncio.get_running_loop().create_future()
    stored, task, sink = await started_before_its_row(harness, row)

    async with asyncio.timeout(WAIT_S):
        await arrived.reached.wait()
    if how == "failed":
        row.set_exception(ConnectionError("the insert failed"))
    else:
        row.cancel()
    arrived.release.set()
    async with asyncio.timeout(WAIT_S):
        await asyncio.wait([task])

    assert isinstance(task.exception(), RowNotWritten)
    assert harness.store.writes == []
    assert harness.store.response(stored.id).status == ResponseStatus.IN_PROGRESS  # as seeded
    assert upstream.bodies[-1].closed  # hung up on the model
    assert "response.completed" not in sink.types
