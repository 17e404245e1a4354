"""`EventLogSink`: how a worker's events reach the persisted log — the first at once, the
rest in batches of `max_events` or per interval, always in order and without a gap."""

from __future__ import annotations

import asyncio

import pytest

from app.engine.events import EventLogSink
from app.shapes import Event

# Long enough never to pass during a test: a write that happens was not waited out.
NEVER_S = 600.0
BOUND_S = 5.0


class RecordingLog:
    """An event log that keeps each batch written; a write can be held open or made to fail."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.failures_left = 0
        self.failed = asyncio.Event()
        self.written = asyncio.Condition()

    async def append_events(self, response_id: str, events: list[Event]) -> bool:
        await self.gate.wait()
        if self.failures_left:
            self.failures_left -= 1
            self.failed.set()
            raise OSError("the database went away")
        async with self.written:
            self.batches.append([event["sequence_number"] for event in events])
            self.written.notify_all()
        return True

    async def wait_for_batches(self, count: int) -> None:
        async with asyncio.timeout(BOUND_S), self.written:
            await self.written.wait_for(lambda: len(self.batches) >= count)


def event(n: int) -> Event:
    return {"type": "response.output_text.delta", "sequence_number": n, "delta": "x"}


async def send(sink: EventLogSink, numbers: range) -> None:
    for n in numbers:
        await sink.send(event(n))


async def test_the_first_event_is_written_at_once_without_waiting_for_the_interval() -> None:
    log = RecordingLog()
    sink = EventLogSink(log, "resp_1", flush_interval_s=NEVER_S, max_events=64)
    await sink.send(event(0))
    await log.wait_for_batches(1)
    assert log.batches == [[0]]
    await sink.aclose()


async def test_a_fast_stream_goes_out_in_batches_of_max_events() -> None:
    log = RecordingLog()
    sink = EventLogSink(log, "resp_1", flush_interval_s=NEVER_S, max_events=4)
    await sink.send(event(0))
    await log.wait_for_batches(1)
    await send(sink, range(1, 9))  # two full batches, each written without the interval
    await log.wait_for_batches(3)
    await sink.send(event(9))  # one event waits for the interval, or a flush
    assert log.batches == [[0], [1, 2, 3, 4], [5, 6, 7, 8]]
    await sink.flush()
    assert log.batches[-1] == [9]
    await sink.aclose()
    assert log.batches == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9]]


async def test_events_sent_during_a_write_follow_it_in_order() -> None:
    log = RecordingLog()
    log.gate.clear()  # the first write stays in flight
    sink = EventLogSink(log, "resp_1", flush_interval_s=NEVER_S, max_events=64)
    await sink.send(event(0))
    await asyncio.sleep(0)  # the writer behind starts its write of event 0
    await send(sink, range(1, 4))
    flushing = asyncio.create_task(sink.flush())  # an item boundary, meanwhile
    await asyncio.sleep(0)
    assert log.batches == []
    log.gate.set()
    async with asyncio.timeout(BOUND_S):
        await flushing
    await sink.aclose()
    assert log.batches == [[0], [1, 2, 3]]


async def test_a_batch_that_could_not_be_written_is_written_by_the_next_flush() -> None:
    log = RecordingLog()
    log.failures_left = 1
    sink = EventLogSink(log, "resp_1", flush_interval_s=NEVER_S, max_events=64)
    await sink.send(event(0))
    async with asyncio.timeout(BOUND_S):
        await log.failed.wait()  # the writer behind tried, and failed
    await send(sink, range(1, 3))
    await sink.aclose()
    assert [n for batch in log.batches for n in batch] == [0, 1, 2]


async def test_a_failed_flush_raises_and_loses_nothing() -> None:
    log = RecordingLog()
    sink = EventLogSink(log, "resp_1", flush_interval_s=NEVER_S, max_events=64)
    await sink.send(event(0))
    await log.wait_for_batches(1)
    await send(sink, range(1, 3))
    log.failures_left = 1
    with pytest.raises(OSError):
        await sink.flush()
    await sink.aclose()
    assert log.batches == [[0], [1, 2]]


async def test_closing_after_a_failed_write_stops_the_writer_behind() -> None:
    log = RecordingLog()
    log.failures_left = 2  # the writer's attempt, and the closing flush's
    sink = EventLogSink(log, "resp_1", flush_interval_s=0.001, max_events=64)
    await sink.send(event(0))
    async with asyncio.timeout(BOUND_S):
        await log.failed.wait()
    with pytest.raises(OSError):
        await sink.aclose()
    await asyncio.sleep(0.01)  # ten of the writer's intervals: it would have written again
    assert log.batches == []
