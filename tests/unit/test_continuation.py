"""Continuing without reading back: a row that carries the conversation before its input,
the loop reading it instead of the chain, and what a WebSocket connection remembers."""

from __future__ import annotations

import dataclasses
from typing import Any

from app.engine.continuation import (
    CARRIED_ITEMS,
    ConnectionMemory,
    carried_items,
    stored_conversation,
    whole_conversation,
)
from app.statuses import ResponseStatus
from app.store.rows import StoredResponse
from tests.support.memory_store import MemoryStore
from tests.unit.harness import Harness
from tests.unit.upstream import ScriptedUpstream, text_reply

EARLIER = [
    {
        "type": "message",
        "id": "msg_a",
        "role": "user",
        "status": "completed",
        "content": [{"type": "input_text", "text": "Remember cobalt."}],
    },
    {
        "type": "message",
        "id": "msg_b",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": "OK.", "annotations": []}],
    },
]


def contents(request: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(m["role"], m["content"]) for m in request["messages"]]


class CountingReader:
    """A store's `get`, counted."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.reads = 0

    async def get(self, response_id: str, owner: str) -> StoredResponse | None:
        self.reads += 1
        return await self.store.get(response_id, owner)


async def test_a_carried_conversation_is_sent_and_nothing_is_read_back(
    harness: Harness, upstream: ScriptedUpstream, store: MemoryStore
) -> None:
    upstream.then(text_reply("cobalt"))
    # Its previous response is gone from storage (a forgotten `store: false` one): the row
    # carries what came before, so the chain is never looked up.
    stored = store.seed(
        {"model": "m", "input": "Which word?", "previous_response_id": "resp_gone"},
        status=ResponseStatus.IN_PROGRESS,
        carried=EARLIER,
    )
    reader = CountingReader(store)
    run = await harness.run(stored)

    assert run.final.status == ResponseStatus.COMPLETED
    assert contents(upstream.requests[0]) == [
        ("user", "Remember cobalt."),
        ("assistant", "OK."),
        ("user", "Which word?"),
    ]
    assert run.final.previous_response_id == "resp_gone"  # echoed as the client sent it
    assert await stored_conversation(reader, run.final) == [
        *EARLIER,
        *run.final.request["input"],
        *run.output,
    ]
    assert reader.reads == 0


async def test_the_chain_stops_at_a_row_that_carries_what_came_before(
    harness: Harness, upstream: ScriptedUpstream, store: MemoryStore
) -> None:
    upstream.then(text_reply("one"), text_reply("two"), text_reply("three"))
    first = await harness.run({"model": "m", "input": "first"})
    second = store.seed(
        {"model": "m", "input": "second", "previous_response_id": first.final.id},
        status=ResponseStatus.IN_PROGRESS,
        carried=EARLIER,
    )
    second_run = await harness.run(second)
    third = await harness.run(
        {"model": "m", "input": "third", "previous_response_id": second_run.final.id}
    )

    assert third.final.status == ResponseStatus.COMPLETED
    # `first` is not in it: the second row's carried items stand for all before it.
    assert contents(upstream.requests[2]) == [
        ("user", "Remember cobalt."),
        ("assistant", "OK."),
        ("user", "second"),
        ("assistant", "two"),
        ("user", "third"),
    ]
    reader = CountingReader(store)
    conversation = await stored_conversation(reader, third.final)
    assert [item["id"] for item in conversation[:2]] == ["msg_a", "msg_b"]
    assert len(conversation) == 6
    assert reader.reads == 1  # the second response; the first is never read


def ended(
    store: MemoryStore, body: dict[str, Any], status: ResponseStatus, **fields: Any
) -> StoredResponse:
    stored = store.seed(body, status=status)
    return dataclasses.replace(stored, **fields)


def test_a_connection_remembers_the_whole_conversation_of_an_unstored_response(
    store: MemoryStore,
) -> None:
    output = [{"type": "message", "id": "msg_out", "role": "assistant", "content": []}]
    final = ended(
        store,
        {"model": "m", "input": "hi", "store": False},
        ResponseStatus.COMPLETED,
        output=output,
        owner="alice",
    )
    final = dataclasses.replace(final, request={**final.request, CARRIED_ITEMS: EARLIER})
    memory = ConnectionMemory()
    memory.remember(None, final)

    assert whole_conversation(final) == [*EARLIER, *final.request["input"], *output]
    assert memory.carried_from("alice", final.id) == whole_conversation(final)
    assert memory.carried_from("bob", final.id) is None  # another owner's
    assert memory.carried_from("alice", "resp_other") is None
    assert memory.carried_from("alice", None) is None


def test_a_stored_response_is_remembered_without_its_conversation(store: MemoryStore) -> None:
    final = ended(store, {"model": "m", "input": "hi"}, ResponseStatus.COMPLETED, output=[])
    memory = ConnectionMemory()
    memory.remember(None, final)
    remembered = memory.recall("", final.id)
    assert remembered is not None and remembered.conversation is None  # read from Postgres
    assert memory.carried_from("", final.id) is None


def test_each_lane_remembers_its_most_recent_response_and_forgets_its_own_failures(
    store: MemoryStore,
) -> None:
    body = {"model": "m", "input": "hi", "store": False}
    first = ended(store, body, ResponseStatus.COMPLETED, output=[])
    second = ended(store, body, ResponseStatus.INCOMPLETE, output=[])
    on_lane = ended(store, body, ResponseStatus.COMPLETED, output=[])
    memory = ConnectionMemory()
    memory.remember(None, first)
    memory.remember(None, second)
    memory.remember("lane", on_lane)
    assert memory.recall("", first.id) is None  # replaced by the lane's newer one
    assert memory.recall("", second.id) is not None
    assert memory.recall("", on_lane.id) is not None  # another lane's, continued as a fork

    memory.forget("lane", second.id)  # a fork of it failed: its own lane keeps it
    assert memory.recall("", second.id) is not None
    memory.forget(None, second.id)
    assert memory.recall("", second.id) is None

    failed = ended(store, body, ResponseStatus.FAILED, output=[])
    memory.remember("lane", failed)  # a failed continuation: the lane forgets both
    assert memory.recall("", on_lane.id) is None
    assert memory.recall("", failed.id) is None


def test_carried_items_are_read_only_from_their_key() -> None:
    assert carried_items({"input": []}) is None
    assert carried_items({CARRIED_ITEMS: []}) == []
    assert carried_items({CARRIED_ITEMS: EARLIER}) == EARLIER
