"""The inline stream's sink: what the run sends waits for the writer's next turn, in one
batch, except the stream's first token, which is handed over at once."""

from __future__ import annotations

import asyncio

from app.engine.events import StreamSink
from app.shapes import Event
from tests.unit.streams import WAIT_S


def delta(sequence_number: int) -> Event:
    return {
        "type": "response.output_text.delta",
        "sequence_number": sequence_number,
        "delta": "w",
    }


async def test_the_first_token_goes_to_the_writer_at_once_and_later_ones_in_batches() -> None:
    sink = StreamSink()
    taken: list[list[str]] = []

    async def writer() -> None:
        while not sink.closed:
            batch = await sink.take(WAIT_S)
            taken.append([event["type"] for event in batch])

    writing = asyncio.create_task(writer())
    await asyncio.sleep(0)  # the writer waits for events
    await sink.send({"type": "response.output_item.added", "sequence_number": 0})
    assert taken == []  # not handed over yet: it goes with what follows
    await sink.send(delta(1))
    assert taken == [["response.output_item.added", "response.output_text.delta"]]
    await sink.send(delta(2))
    await sink.send(delta(3))
    assert len(taken) == 1  # later tokens wait for the writer's next turn, together
    sink.close()
    async with asyncio.timeout(WAIT_S):
        await writing
    assert taken[1] == ["response.output_text.delta", "response.output_text.delta"]
