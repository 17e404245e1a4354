"""The in-memory StepStore keeps the Postgres store's rules the loop relies on."""

from __future__ import annotations

import pytest

from app.engine.step_store import StepStore
from app.statuses import ResponseStatus, StepKind, StepStatus
from app.store.rows import Outcome, StepOutcome
from tests.support.memory_store import MemoryStore, ProcessCrash, StoreError


def test_it_is_a_step_store() -> None:
    store: StepStore = MemoryStore()
    assert store is not None


def test_a_seeded_row_is_the_request_as_the_api_stores_it() -> None:
    store = MemoryStore()

    stored = store.seed(
        {"model": "m", "input": "Hi", "background": True, "stream": True, "temperature": 0.3},
        owner="key-digest",
    )

    assert stored.status == ResponseStatus.QUEUED
    assert (stored.model, stored.owner, stored.service_tier) == ("m", "key-digest", "auto")
    assert (stored.background, stored.stream) == (True, True)
    assert stored.request["temperature"] == 0.3
    [item] = stored.request["input"]
    assert item["type"] == "message"
    assert item["id"].startswith("msg_")
    assert store.response(stored.id) == stored


async def test_get_is_by_owner() -> None:
    store = MemoryStore()
    stored = store.seed({"model": "m", "input": "Hi"}, owner="a")

    assert await store.get(stored.id, "a") == stored
    assert await store.get(stored.id, "b") is None
    assert await store.get("resp_missing", "a") is None


async def test_mark_in_progress_only_moves_an_active_response() -> None:
    store = MemoryStore()
    stored = store.seed({"model": "m", "input": "Hi"})

    first = await store.mark_in_progress(stored.id)
    again = await store.mark_in_progress(stored.id)

    assert first is not None and again is not None
    assert first.status == ResponseStatus.IN_PROGRESS
    assert again.started_at == first.started_at  # the first start is kept
    await store.finish(stored.id, Outcome(ResponseStatus.CANCELLED, []))
    assert await store.mark_in_progress(stored.id) is None
    assert store.response(stored.id).status == ResponseStatus.CANCELLED


async def test_the_first_ending_wins() -> None:
    store = MemoryStore()
    stored = store.seed({"model": "m", "input": "Hi"}, lease_owner="api:1")

    cancelled = await store.finish(stored.id, Outcome(ResponseStatus.CANCELLED, []))
    completed = await store.finish(
        stored.id,
        Outcome(
            ResponseStatus.COMPLETED,
            [{"id": "msg_1", "type": "message"}],
            usage={"input_tokens": 1},
        ),
    )

    assert cancelled is not None
    assert cancelled.status == ResponseStatus.CANCELLED
    assert cancelled.completed_at is not None
    assert cancelled.lease_owner is None
    assert completed is None
    assert store.response(stored.id) == cancelled


async def test_steps_are_keyed_by_response_and_ordinal() -> None:
    store = MemoryStore()
    stored = store.seed({"model": "m", "input": "Hi"})
    await store.start_step(stored.id, 1, StepKind.TOOL_CALL, {"call_id": "c"})
    await store.start_step(stored.id, 0, StepKind.MODEL_CALL, None)

    # Starting a step again (a write retried after a lost connection) changes nothing.
    await store.start_step(stored.id, 1, StepKind.TOOL_CALL, None)
    with pytest.raises(StoreError):
        await store.start_step("resp_missing", 0, StepKind.MODEL_CALL, None)
    steps = await store.steps(stored.id)
    assert [(s.ordinal, s.kind, s.status) for s in steps] == [
        (0, StepKind.MODEL_CALL, StepStatus.IN_PROGRESS),
        (1, StepKind.TOOL_CALL, StepStatus.IN_PROGRESS),
    ]


async def test_step_items_are_recorded_only_while_the_step_runs() -> None:
    store = MemoryStore()
    stored = store.seed({"model": "m", "input": "Hi"})
    await store.start_step(stored.id, 0, StepKind.MODEL_CALL, None)

    await store.record_step_items(stored.id, 0, [{"id": "msg_1"}])
    [running] = await store.steps(stored.id)
    await store.finish_step(stored.id, 0, StepOutcome(StepStatus.COMPLETED, {"items": []}))
    await store.record_step_items(stored.id, 0, [{"id": "msg_late"}])
    [finished] = await store.steps(stored.id)

    assert running.result == {"items": [{"id": "msg_1"}]}
    assert finished.result == {"items": []}
    assert finished.completed_at is not None


async def test_values_are_stored_as_json_not_shared() -> None:
    store = MemoryStore()
    stored = store.seed({"model": "m", "input": "Hi"})
    output = [{"id": "msg_1", "type": "message", "status": StepStatus.COMPLETED}]

    final = await store.finish(stored.id, Outcome(ResponseStatus.COMPLETED, output))
    output[0]["id"] = "changed by the caller"
    assert final is not None and final.output is not None
    final.output[0]["id"] = "changed by a reader"

    assert store.response(stored.id).output == [
        {"id": "msg_1", "type": "message", "status": "completed"}
    ]
    with pytest.raises(TypeError):
        await store.start_step(stored.id, 0, StepKind.MODEL_CALL, {"not json": object()})


async def test_a_crash_before_the_commit_loses_that_write_and_every_later_one() -> None:
    store = MemoryStore()
    stored = store.seed({"model": "m", "input": "Hi"})
    store.crash_at(lambda write: write.name == "start_step" and write.ordinal == 1)
    await store.start_step(stored.id, 0, StepKind.MODEL_CALL, None)

    with pytest.raises(ProcessCrash):
        await store.start_step(stored.id, 1, StepKind.TOOL_CALL, None)
    with pytest.raises(ProcessCrash):
        await store.steps(stored.id)

    restarted = store.restarted()
    assert [s.ordinal for s in await restarted.steps(stored.id)] == [0]
    assert [(w.number, w.name, w.ordinal) for w in store.writes] == [
        (1, "start_step", 0),
        (2, "start_step", 1),
    ]


async def test_a_crash_after_the_commit_keeps_that_write() -> None:
    store = MemoryStore()
    stored = store.seed({"model": "m", "input": "Hi"})
    store.crash_at(lambda write: write.name == "finish", committed=True)

    with pytest.raises(ProcessCrash):
        await store.finish(stored.id, Outcome(ResponseStatus.COMPLETED, []))

    assert store.crashed
    restarted = store.restarted()
    assert restarted.response(stored.id).status == ResponseStatus.COMPLETED
    assert not restarted.crashed
    assert await restarted.mark_in_progress(stored.id) is None


@pytest.mark.parametrize(
    ("status", "appended"),
    [
        (ResponseStatus.COMPLETED, True),
        (ResponseStatus.INCOMPLETE, True),
        (ResponseStatus.FAILED, False),
        (ResponseStatus.CANCELLED, False),
    ],
)
async def test_an_ending_appends_to_the_conversation_as_the_database_does(
    status: ResponseStatus, appended: bool
) -> None:
    store = MemoryStore()
    conversation_id = store.seed_conversation([])
    stored = store.seed({"model": "m", "input": "Hi", "conversation": conversation_id})
    [own_input] = stored.request["input"]
    output = [{"id": "msg_out", "type": "message"}]

    await store.finish(stored.id, Outcome(status, output), appends_to_conversation=True)

    expected = [own_input["id"], "msg_out"] if appended else []
    assert [item["id"] for item in store.conversations[conversation_id]] == expected


async def test_an_ending_that_does_not_ask_for_the_transaction_appends_nothing() -> None:
    store = MemoryStore()
    conversation_id = store.seed_conversation([])
    stored = store.seed({"model": "m", "input": "Hi", "conversation": conversation_id})

    await store.finish(stored.id, Outcome(ResponseStatus.COMPLETED, []))

    assert store.conversations[conversation_id] == []
