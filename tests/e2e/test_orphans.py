"""The recovery sweep's invariant: every running response has a live owner (a job that waits
or a live worker holds, or an unexpired inline lease). One without is queued again and
finishes, from its persisted steps; past MAX_ATTEMPTS recoveries it fails with a clear error.

Orphans are made the ways the issue names: a job deleted by hand, and a job that ended
(`failed`) while its response did not. Each scenario has a database of its own, and its
worker is started only once the orphans exist.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from app.config import Settings
from tests.support.database import migrated_scratch_database
from tests.support.processes import STARTUP_TIMEOUT_S, command_env, run_command
from tests.support.servers import running_api
from tests.support.waiting import wait_for

MAX_ATTEMPTS = 2
RECOVERY_TIMEOUT_S = 30.0


@dataclass
class Scenario:
    database_url: str
    api_url: str
    worker_env: dict[str, str]

    def queue_background(self, text: str) -> str:
        reply = httpx.post(
            f"{self.api_url}/v1/responses",
            json={"model": "demo", "input": text, "background": True},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["status"] == "queued"
        return str(reply.json()["id"])

    def sql(self, statement: str, *params: Any) -> list[dict[str, Any]]:
        with psycopg.connect(self.database_url, autocommit=True, row_factory=dict_row) as db:
            cursor = db.execute(statement, params)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    def response(self, response_id: str) -> dict[str, Any]:
        reply = httpx.get(f"{self.api_url}/v1/responses/{response_id}", timeout=30)
        assert reply.status_code == 200
        return dict(reply.json())

    @contextlib.contextmanager
    def worker(self) -> Iterator[None]:
        with run_command("-m", "worker", "--concurrency", "2", env=self.worker_env) as worker:
            worker.wait_for_line(r'"worker ready"', timeout=STARTUP_TIMEOUT_S)
            yield

    def ended(self, response_id: str) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            response = self.response(response_id)
            return response if response["status"] not in ("queued", "in_progress") else None

        return wait_for(probe, timeout_s=RECOVERY_TIMEOUT_S, what=f"{response_id} to end")


@pytest.fixture
def scenario(
    postgres_admin_url: str, upstream_url: str, make_settings: Callable[..., Settings]
) -> Iterator[Scenario]:
    with migrated_scratch_database(postgres_admin_url) as database_url:
        tuning = {
            "WORKER_HEARTBEAT_S": "0.5",
            "STALL_THRESHOLD_S": "2",
            "RECOVERY_INTERVAL_S": "1",
            "MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        }
        env = command_env(DATABASE_URL=database_url, UPSTREAM_BASE_URL=upstream_url, **tuning)
        with running_api(make_settings(database_url=database_url)) as api_url:
            yield Scenario(database_url, api_url, env)


def test_responses_whose_jobs_are_gone_or_ended_are_queued_again_and_finish(
    scenario: Scenario,
) -> None:
    deleted = scenario.queue_background("my job was deleted")
    failed = scenario.queue_background("my job ended in error")
    scenario.sql(
        "DELETE FROM procrastinate_jobs WHERE id = (SELECT job_id FROM responses WHERE id = %s)",
        deleted,
    )
    scenario.sql(
        "UPDATE procrastinate_jobs SET status = 'failed'"
        " WHERE id = (SELECT job_id FROM responses WHERE id = %s)",
        failed,
    )

    with scenario.worker():
        finished = {rid: scenario.ended(rid) for rid in (deleted, failed)}

    for response_id, text in ((deleted, "my job was deleted"), (failed, "my job ended in error")):
        response = finished[response_id]
        assert response["status"] == "completed"
        assert response["output"][0]["content"][0]["text"] == f"Hello! You said: {text}"
    rows = scenario.sql("SELECT id, recoveries FROM responses ORDER BY id")
    assert {row["id"]: row["recoveries"] for row in rows} == {deleted: 1, failed: 1}


def test_a_response_orphaned_past_max_attempts_fails_with_a_clear_error(
    scenario: Scenario,
) -> None:
    response_id = scenario.queue_background("orphaned too often")
    scenario.sql(
        "DELETE FROM procrastinate_jobs WHERE id = (SELECT job_id FROM responses WHERE id = %s)",
        response_id,
    )
    scenario.sql("UPDATE responses SET recoveries = %s WHERE id = %s", MAX_ATTEMPTS, response_id)

    with scenario.worker():
        response = scenario.ended(response_id)

    assert response["status"] == "failed"
    assert response["error"]["code"] == "orphaned"
    assert str(MAX_ATTEMPTS) in response["error"]["message"]
