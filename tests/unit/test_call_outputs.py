"""A `function_call_output` must answer a call of the conversation: OpenAI's 400 otherwise,
and the chain read only as far as it takes to find the calls."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from app.engine.call_outputs import check_call_outputs
from app.engine.errors import RequestError
from app.statuses import ResponseStatus
from app.store.rows import StoredResponse
from tests.support.memory_store import MemoryStore
from tests.unit.test_continuation import CountingReader


def call(call_id: str) -> dict[str, Any]:
    return {"type": "function_call", "call_id": call_id, "name": "f", "arguments": "{}"}


def output(call_id: str) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": "42"}


def previous(
    store: MemoryStore, out: list[dict[str, Any]], earlier: str | None = None
) -> StoredResponse:
    body: dict[str, Any] = {"model": "m", "input": "hi"}
    if earlier is not None:
        body["previous_response_id"] = earlier
    stored = store.seed(body, status=ResponseStatus.COMPLETED)
    store.responses[stored.id]["output"] = out
    return dataclasses.replace(stored, output=out)


async def test_outputs_answering_calls_pass_wherever_the_calls_are(store: MemoryStore) -> None:
    reader = CountingReader(store)
    await check_call_outputs([call("c1"), output("c1")], None, None, reader)
    await check_call_outputs([output("c2")], [call("c2")], None, reader)
    await check_call_outputs([output("c3")], None, previous(store, [call("c3")]), reader)
    await check_call_outputs([{"type": "message"}], None, None, reader)
    assert reader.reads == 0


async def test_an_output_answering_nothing_is_a_400_naming_it(store: MemoryStore) -> None:
    items = [call("c1"), output("c1"), output("call_missing")]
    with pytest.raises(RequestError) as refused:
        await check_call_outputs(items, None, None, CountingReader(store))
    assert refused.value.message == (
        "No tool call found for function call output with call_id call_missing."
    )
    assert refused.value.param == "input[2].call_id"


async def test_the_older_chain_is_read_only_when_the_call_is_not_nearer(
    store: MemoryStore,
) -> None:
    oldest = previous(store, [call("c_old")])
    middle = previous(store, [{"type": "message", "id": "m"}], earlier=oldest.id)
    reader = CountingReader(store)
    await check_call_outputs([output("c_old")], None, middle, reader)
    assert reader.reads == 1  # the oldest, read once its call was not in the middle one

    reader.reads = 0
    with pytest.raises(RequestError):
        await check_call_outputs([output("c_none")], None, middle, reader)
    assert reader.reads == 1
