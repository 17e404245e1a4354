"""Rows as Postgres writes them: a model call's step row is committed without waiting for
the disk, while a tool call's (which guards a side effect) is not."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg.types.json import Jsonb

from app.statuses import StepKind
from app.store.queries import QUERIES
from tests.support.database import migrated_scratch_database


@pytest.fixture
def scratch_url(postgres_admin_url: str) -> Iterator[str]:
    with migrated_scratch_database(postgres_admin_url) as url:
        yield url


def add_response(url: str, response_id: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO responses (id, owner, status, request, model)"
            " VALUES (%s, '', 'in_progress', %s, 'demo')",
            (response_id, Jsonb({"model": "demo", "input": "hi"})),
        )


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
