"""The event log in Postgres: batches of events, exact reads after any sequence number, a
closed log, and the rows of the one-row-per-event log moved by the migration."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from app.config import Settings
from app.engine.tail import tail_events
from app.shapes import Event
from app.store.db import create_pool
from app.store.migrate import MIGRATIONS_DIR, apply_migrations
from app.store.notify import EventNotifier
from app.store.responses import ResponseStore
from tests.support.database import add_response, migrated_scratch_database, scratch_database

# The last migration of the one-row-per-event log.
BEFORE_BATCHES = "0005_recoveries"


def delta(sequence_number: int, text: str = "word") -> Event:
    return {
        "type": "response.output_text.delta",
        "sequence_number": sequence_number,
        "item_id": "msg_1",
        "output_index": 0,
        "content_index": 0,
        "delta": text,
        "logprobs": [],
    }


def completed(sequence_number: int) -> Event:
    return {"type": "response.completed", "sequence_number": sequence_number, "response": {}}


async def with_store(url: str, work: Any) -> Any:
    settings = Settings(database_url=url, db_pool_min_size=1, db_pool_max_size=2)
    pool = create_pool(settings, name="event-log-test")
    await pool.open(wait=True)
    try:
        return await work(ResponseStore(pool))
    finally:
        await pool.close()


@pytest.fixture
def scratch_url(postgres_admin_url: str) -> Iterator[str]:
    with migrated_scratch_database(postgres_admin_url) as url:
        yield url


def test_reads_after_any_sequence_number_are_exact_across_batches(scratch_url: str) -> None:
    add_response(scratch_url, "resp_a")
    events = [delta(n, f"w{n} ") for n in range(10)]

    async def work(store: ResponseStore) -> None:
        for batch in (events[0:3], events[3:4], events[4:10]):
            assert await store.append_events("resp_a", batch)
        for after in range(-1, 10):
            assert await store.events_after("resp_a", after) == events[after + 1 :]
        assert await store.last_sequence_number("resp_a") == 9

    asyncio.run(with_store(scratch_url, work))
    with psycopg.connect(scratch_url, row_factory=dict_row) as conn:
        rows = conn.execute(
            "SELECT first_sequence_number AS first, last_sequence_number AS last, closed"
            " FROM response_event_batches ORDER BY first_sequence_number"
        ).fetchall()
    assert rows == [
        {"first": 0, "last": 2, "closed": False},
        {"first": 3, "last": 3, "closed": False},
        {"first": 4, "last": 9, "closed": False},
    ]


def test_a_closed_log_and_an_overlapping_batch_take_nothing(scratch_url: str) -> None:
    add_response(scratch_url, "resp_b")

    async def work(store: ResponseStore) -> None:
        assert await store.append_events("resp_b", [delta(0), delta(1)])
        # A batch that overlaps what is written comes from a run that lost the response.
        assert not await store.append_events("resp_b", [delta(1, "other"), delta(2)])
        assert await store.append_events("resp_b", [delta(2), completed(3)])
        assert not await store.append_events("resp_b", [delta(4)])
        assert [e["sequence_number"] for e in await store.events_after("resp_b", -1)] == [
            0,
            1,
            2,
            3,
        ]
        assert not await store.append_events("resp_missing", [delta(0)])

    asyncio.run(with_store(scratch_url, work))


def test_a_batch_of_streamed_tokens_takes_a_few_bytes_each(scratch_url: str) -> None:
    add_response(scratch_url, "resp_c")
    tokens = 500
    words = "the quick brown fox jumps over a lazy dog".split()
    events = [delta(n, words[n % len(words)] + " ") for n in range(tokens)]

    async def work(store: ResponseStore) -> None:
        for start in range(0, tokens, 50):  # batches the size of a 50 ms flush at 1,000 tok/s
            assert await store.append_events("resp_c", events[start : start + 50])

    asyncio.run(with_store(scratch_url, work))
    with psycopg.connect(scratch_url, row_factory=dict_row) as conn:
        stored = conn.execute(
            "SELECT sum(octet_length(events)) AS bytes FROM response_event_batches"
        ).fetchone()
    assert stored is not None
    # The JSON of one of these events is ~150 bytes; compressed in its batch, a tenth of it.
    assert stored["bytes"] / tokens < 16


def test_the_migration_moves_each_log_into_one_batch(
    postgres_admin_url: str, tmp_path: Path
) -> None:
    earlier = tmp_path / "migrations"
    earlier.mkdir()
    copied = [path for path in sorted(MIGRATIONS_DIR.glob("*.sql")) if path.stem <= BEFORE_BATCHES]
    for path in copied:
        shutil.copy(path, earlier / path.name)
    finished = [delta(0, "a"), delta(1, "b"), completed(2)]
    running = [delta(0, "x")]
    with scratch_database(postgres_admin_url) as url:
        asyncio.run(apply_migrations(url, earlier))
        for response_id, events in (("resp_done", finished), ("resp_running", running)):
            add_response(url, response_id)
            with psycopg.connect(url, autocommit=True) as conn:
                for event in events:
                    conn.execute(
                        "INSERT INTO response_events (response_id, sequence_number, type, data)"
                        " VALUES (%s, %s, %s, %s)",
                        (response_id, event["sequence_number"], event["type"], Jsonb(event)),
                    )

        later = [p.stem for p in sorted(MIGRATIONS_DIR.glob("*.sql")) if p.stem > BEFORE_BATCHES]
        assert later[0] == "0006_event_batches"
        assert asyncio.run(apply_migrations(url)) == later

        async def work(store: ResponseStore) -> None:
            assert await store.events_after("resp_done", -1) == finished
            assert await store.events_after("resp_done", 0) == finished[1:]
            assert await store.events_after("resp_running", -1) == running
            # The moved log of the finished response is closed; the other takes more.
            assert not await store.append_events("resp_done", [delta(3)])
            assert await store.append_events("resp_running", [delta(1, "y")])
            assert await store.last_sequence_number("resp_running") == 1

        asyncio.run(with_store(url, work))


def test_a_tail_that_finds_the_row_ended_waits_for_the_terminal_event(scratch_url: str) -> None:
    """A run commits its ending, then logs its terminal event: a tailer looking in between
    (its recheck fell there) waits for the event rather than end the stream without it."""
    add_response(scratch_url, "resp_end")
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE responses SET status = 'completed', completed_at = now() WHERE id = %s",
            ("resp_end",),
        )

    async def work(store: ResponseStore) -> list[Event]:
        assert await store.append_events("resp_end", [delta(0)])
        notifier = EventNotifier(scratch_url)
        seen: list[Event] = []
        try:
            tail = tail_events(
                store, notifier, "resp_end", after=-1, idle_s=0.05, stop=asyncio.Event()
            )
            async with asyncio.timeout(30):
                async for batch in tail:
                    if batch is None:  # a recheck found the row ended, the event not there
                        if not seen or seen[-1]["type"] != "response.completed":
                            await store.append_events("resp_end", [completed(1)])
                        continue
                    seen.extend(batch)
        finally:
            await notifier.stop()
        return seen

    seen = asyncio.run(with_store(scratch_url, work))
    assert [event["type"] for event in seen] == [
        "response.output_text.delta",
        "response.completed",
    ]
