"""Rows as Postgres writes them: a response row known before it is written is the row the
insert returns, and a model call's step row is committed without waiting for the disk
while a tool call's (which guards a side effect) is not."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg.types.json import Jsonb

from app.config import Settings
from app.statuses import ResponseStatus, StepKind
from app.store.db import create_pool
from app.store.queries import QUERIES
from app.store.responses import ResponseStore
from app.store.rows import NewResponse, StoredResponse
from tests.support.database import add_response, migrated_scratch_database


@pytest.fixture
def scratch_url(postgres_admin_url: str) -> Iterator[str]:
    with migrated_scratch_database(postgres_admin_url) as url:
        yield url


def new_response(response_id: str, **fields: object) -> NewResponse:
    row = NewResponse(
        id=response_id,
        owner="key_1",
        status=ResponseStatus.IN_PROGRESS,
        request={"model": "demo", "input": [{"type": "message", "role": "user"}]},
        model="demo",
        service_tier="default",
        background=False,
        stream=True,
        previous_response_id=None,
        lease_owner="api:1",
        lease_ttl_s=30.0,
    )
    return dataclasses.replace(row, **fields)  # type: ignore[arg-type]


async def inserted(url: str, new: NewResponse) -> StoredResponse:
    pool = create_pool(Settings(database_url=url, db_pool_max_size=1), name="rows-test")
    await pool.open(wait=True)
    try:
        return await ResponseStore(pool).insert(new)
    finally:
        await pool.close()


@pytest.mark.parametrize("status", [ResponseStatus.IN_PROGRESS, ResponseStatus.QUEUED])
def test_a_row_known_before_it_is_written_is_the_row_written(
    scratch_url: str, status: ResponseStatus
) -> None:
    new = new_response(
        f"resp_{status}",
        status=status,
        lease_owner="api:1" if status == ResponseStatus.IN_PROGRESS else None,
        created_at=datetime(2026, 12, 7, 1, 2, 3, 456789, tzinfo=UTC),
    )

    written = asyncio.run(inserted(scratch_url, new))

    assert written == StoredResponse.as_inserted(new)


def test_without_a_clock_the_row_takes_the_databases(scratch_url: str) -> None:
    before = datetime.now(UTC)
    written = asyncio.run(inserted(scratch_url, new_response("resp_now")))
    assert written.created_at == written.started_at == written.updated_at
    assert before <= written.created_at <= datetime.now(UTC)


@pytest.mark.parametrize(
    ("query", "kind", "commit"),
    [("start_model_step", StepKind.MODEL_CALL, "off"), ("start_step", StepKind.TOOL_CALL, "on")],
)
def test_only_a_model_calls_step_row_commits_without_waiting_for_the_disk(
    scratch_url: str, query: str, kind: StepKind, commit: str
) -> None:
    add_response(scratch_url, "resp_steps")
    with psycopg.connect(scratch_url) as conn:
        with conn.transaction():
            params = {"response_id": "resp_steps", "ordinal": 0, "kind": kind}
            conn.execute(QUERIES[query], params | {"request": Jsonb({"model": "demo"})})
            # What this statement's transaction commits with.
            assert conn.execute("SHOW synchronous_commit").fetchone() == (commit,)
        # For that transaction only: the connection's next ones wait for the disk again.
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
        row = conn.execute("SELECT kind, status FROM response_steps").fetchone()
    assert row == (kind, "in_progress")
