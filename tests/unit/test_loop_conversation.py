"""The loop on a response that names a conversation: the conversation's items as they were
when it was accepted come before its input, and its ending asks the store to append its
input and output (which the store does for `completed` and `incomplete` only), once, across
a crash."""

from __future__ import annotations

import asyncio
from typing import Any

from app.engine.input_items import normalise_input
from app.engine.loop import RunMode
from app.shapes import Item
from app.statuses import ResponseStatus
from tests.support.memory_store import at_write
from tests.unit.harness import Harness
from tests.unit.streams import WAIT_S
from tests.unit.upstream import Hold, Reply, ScriptedUpstream, status, text_chunks, text_reply


def seeded(harness: Harness, *texts: str) -> str:
    """A conversation holding a user message of each text."""
    items = normalise_input([{"role": "user", "content": text} for text in texts])
    return harness.store.seed_conversation(items)


def held(harness: Harness, conversation_id: str) -> list[Item]:
    return harness.store.conversations[conversation_id]


def body(conversation_id: str, text: str, **fields: Any) -> dict[str, Any]:
    return {"model": "m", "input": text, "conversation": conversation_id, **fields}


async def test_the_conversation_comes_before_the_input_and_gets_both(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    conversation_id = seeded(harness, "My name is Ada.")
    upstream.then(text_reply("Ada."))

    run = await harness.run(body(conversation_id, "Who am I?"))

    assert run.final.status == ResponseStatus.COMPLETED
    assert upstream.requests[0]["messages"] == [
        {"role": "user", "content": "My name is Ada."},
        {"role": "user", "content": "Who am I?"},
    ]
    assert run.response["conversation"] == {"id": conversation_id}
    [own_input] = run.final.request["input"]
    assert [item["id"] for item in held(harness, conversation_id)[1:]] == [
        own_input["id"],
        run.output[0]["id"],
    ]


async def test_items_after_its_position_are_not_its_context(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    conversation_id = seeded(harness, "before")
    stored = harness.seed(body(conversation_id, "mine"))
    held(harness, conversation_id).extend(normalise_input("added after it was accepted"))
    upstream.then(text_reply("ok"))

    await harness.run(stored)

    assert [m["content"] for m in upstream.requests[0]["messages"]] == ["before", "mine"]


async def test_a_failed_response_appends_nothing(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    conversation_id = seeded(harness, "before")
    upstream.then(status(400, "no such model"))

    run = await harness.run(body(conversation_id, "fails"))

    assert run.final.status == ResponseStatus.FAILED
    assert len(held(harness, conversation_id)) == 1


async def test_a_cancelled_response_appends_nothing(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    conversation_id = seeded(harness, "before")
    hold = Hold()
    upstream.then(Reply([*text_chunks("Half an"), hold]))
    stored = harness.seed(body(conversation_id, "left"))

    async with harness.started(stored) as (task, _):
        async with asyncio.timeout(WAIT_S):
            await hold.reached.wait()
        task.cancel()  # the client went away
        await asyncio.wait([task], timeout=WAIT_S)

    cancelled = harness.store.response(stored.id)
    assert cancelled.status == ResponseStatus.CANCELLED
    assert cancelled.output  # the half-written message: a cancelled response shows it
    assert len(held(harness, conversation_id)) == 1


async def test_an_incomplete_response_appends_what_it_has(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    conversation_id = seeded(harness)
    upstream.then(text_reply("Once upon", finish_reason="length"))

    run = await harness.run(body(conversation_id, "tell"))

    assert run.final.status == ResponseStatus.INCOMPLETE
    assert [item["id"] for item in held(harness, conversation_id)] == [
        run.final.request["input"][0]["id"],
        run.output[0]["id"],
    ]


async def test_a_crash_before_the_ending_commits_appends_once_on_resume(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    conversation_id = seeded(harness, "before")
    upstream.then(text_reply("first try"), text_reply("second try"))
    stored = harness.seed(body(conversation_id, "go", background=True), RunMode.WORKER)

    store, logged = await harness.crash(stored, at_write("finish"))
    assert len(store.conversations[conversation_id]) == 1  # the ending never committed
    run, _ = await harness.resume(store, stored.id, logged)

    assert run.final.status == ResponseStatus.COMPLETED
    assert [item["id"] for item in store.conversations[conversation_id][1:]] == [
        stored.request["input"][0]["id"],
        run.output[0]["id"],
    ]


async def test_a_crash_after_the_ending_committed_appends_nothing_more(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    conversation_id = seeded(harness, "before")
    upstream.then(text_reply("done"))
    stored = harness.seed(body(conversation_id, "go", background=True), RunMode.WORKER)

    store, logged = await harness.crash(stored, at_write("finish"), committed=True)
    appended = list(store.conversations[conversation_id])
    run, _ = await harness.resume(store, stored.id, logged)

    assert run.final.status == ResponseStatus.COMPLETED
    assert store.conversations[conversation_id] == appended
    assert len(appended) == 3


async def test_a_chain_from_a_response_on_a_conversation_starts_with_its_context(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    conversation_id = seeded(harness, "context")
    upstream.then(text_reply("A1"), text_reply("A2"))
    first = await harness.run(body(conversation_id, "Q1"))

    await harness.run({"model": "m", "input": "Q2", "previous_response_id": first.final.id})

    assert [m["content"] for m in upstream.requests[1]["messages"]] == [
        "context",
        "Q1",
        "A1",
        "Q2",
    ]
    assert len(held(harness, conversation_id)) == 3  # a chain does not append
