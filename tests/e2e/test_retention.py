"""Retention against a real Postgres: each test gets its own migrated scratch database, so
backdated rows and deletions never touch the suite's shared one.

Rows are written with SQL and backdated explicitly; procrastinate jobs are moved through
their states with procrastinate's own SQL functions, so its triggers write the real events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, LiteralString

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from app.config import Settings
from app.store.db import create_pool
from app.store.retention import RetentionReport, apply_retention
from tests.support.database import migrated_scratch_database

DAY = timedelta(days=1)
RESPONSE_AGE = 30 * DAY
EVENT_AGE = 7 * DAY
OLD = 40 * DAY  # past both ages
MIDDLE = 10 * DAY  # past the event age only
RECENT = 1 * DAY  # past neither

Conn = psycopg.Connection[dict[str, Any]]


@pytest.fixture
def scratch_url(postgres_admin_url: str) -> Iterator[str]:
    with migrated_scratch_database(postgres_admin_url) as url:
        yield url


@pytest.fixture
def conn(scratch_url: str) -> Iterator[Conn]:
    with psycopg.connect(scratch_url, autocommit=True, row_factory=dict_row) as c:
        yield c


def run_retention(url: str, *, batch_size: int = 500) -> RetentionReport:
    async def run() -> RetentionReport:
        # The app's own pool (autocommit connections), as the worker will use it.
        settings = Settings(database_url=url, db_pool_min_size=1, db_pool_max_size=2)
        pool = create_pool(settings, name="retention-test")
        await pool.open(wait=True)
        try:
            return await apply_retention(
                pool,
                response_age_s=RESPONSE_AGE.total_seconds(),
                event_age_s=EVENT_AGE.total_seconds(),
                batch_size=batch_size,
            )
        finally:
            await pool.close()

    return asyncio.run(run())


def add_response(
    conn: Conn,
    rid: str,
    status: str,
    *,
    ended_ago: timedelta | None,
    updated_ago: timedelta | None = None,
    steps: int = 2,
    events: int = 3,
    job_id: int | None = None,
) -> None:
    """A response created before it ended, with `steps` steps and `events` logged events."""
    if updated_ago is None:
        updated_ago = ended_ago if ended_ago is not None else OLD
    conn.execute(
        "INSERT INTO responses (id, owner, status, request, model, created_at, started_at,"
        " completed_at, updated_at, job_id)"
        " VALUES (%(id)s, '', %(status)s, %(request)s, 'demo',"
        " now() - %(created)s::interval, now() - %(created)s::interval,"
        # A NULL `ended` needs its type spelled out; NULL stays NULL.
        " now() - %(ended)s::interval, now() - %(updated)s::interval, %(job_id)s)",
        {
            "id": rid,
            "status": status,
            "request": Jsonb({"model": "demo", "input": "hi"}),
            "created": updated_ago + timedelta(minutes=5),
            "ended": ended_ago,
            "updated": updated_ago,
            "job_id": job_id,
        },
    )
    for ordinal in range(steps):
        conn.execute(
            "INSERT INTO response_steps (response_id, ordinal, kind, status, started_at)"
            " VALUES (%s, %s, 'model_call', 'completed', now() - %s)",
            (rid, ordinal, updated_ago),
        )
    for seq in range(events):
        conn.execute(
            "INSERT INTO response_event_batches (response_id, first_sequence_number,"
            " last_sequence_number, closed, codec, events, created_at)"
            " VALUES (%s, %s, %s, false, 0, %s, now() - %s)",
            (rid, seq, seq, b'[{"type": "response.output_text.delta", "delta": "x"}]', updated_ago),
        )


def add_job(
    conn: Conn, status: str, *, deferred_ago: timedelta, finished_ago: timedelta | None = None
) -> int:
    """A run_response job taken to `status` by procrastinate's functions; its 'deferred'
    event is backdated by `deferred_ago`, every later event by `finished_ago`."""
    row = conn.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, priority, args)"
        " VALUES ('responses', 'ferry:run_response', 0, %s) RETURNING id",
        (Jsonb({"response_id": "resp_x"}),),
    ).fetchone()
    assert row is not None
    job_id = int(row["id"])
    if status != "todo" and status != "cancelled":
        # What procrastinate_fetch_job does, without needing a registered worker.
        conn.execute("UPDATE procrastinate_jobs SET status = 'doing' WHERE id = %s", (job_id,))
    if status in ("succeeded", "failed"):
        conn.execute("SELECT procrastinate_finish_job_v1(%s, %s, false)", (job_id, status))
    elif status == "aborted":
        conn.execute("SELECT procrastinate_cancel_job_v1(%s, true, false)", (job_id,))
        conn.execute("SELECT procrastinate_finish_job_v1(%s, 'aborted', false)", (job_id,))
    elif status == "cancelled":
        conn.execute("SELECT procrastinate_cancel_job_v1(%s, false, false)", (job_id,))
    conn.execute(
        "UPDATE procrastinate_events SET at = now() - CASE WHEN type = 'deferred'"
        " THEN %(deferred)s ELSE %(finished)s END WHERE job_id = %(id)s",
        {"deferred": deferred_ago, "finished": finished_ago or deferred_ago, "id": job_id},
    )
    assert job_status(conn, job_id) == status
    return job_id


def job_status(conn: Conn, job_id: int) -> str | None:
    row = conn.execute("SELECT status FROM procrastinate_jobs WHERE id = %s", (job_id,)).fetchone()
    return None if row is None else str(row["status"])


def ids(conn: Conn, query: LiteralString) -> set[Any]:
    """The first column of every row `query` returns."""
    return {next(iter(row.values())) for row in conn.execute(query)}


def counts_by_response(conn: Conn, table: LiteralString) -> dict[str, int]:
    query = sql.SQL("SELECT response_id, count(*) AS n FROM {} GROUP BY response_id")
    return {
        row["response_id"]: row["n"] for row in conn.execute(query.format(sql.Identifier(table)))
    }


def test_old_terminal_responses_go_with_their_steps_and_events(
    scratch_url: str, conn: Conn
) -> None:
    for status in ("completed", "failed", "incomplete", "cancelled"):
        add_response(conn, f"old_{status}", status, ended_ago=OLD)
    # No completed_at: the last change stands in for the end.
    add_response(conn, "old_no_end", "cancelled", ended_ago=None, updated_ago=OLD)
    add_response(conn, "recent_no_end", "failed", ended_ago=None, updated_ago=RECENT)
    # completed_at, when set, is what counts.
    add_response(conn, "recent_end_old_update", "completed", ended_ago=RECENT, updated_ago=OLD)
    add_response(conn, "recent_completed", "completed", ended_ago=RECENT)
    # Live work is never touched, however old (even with a stray completed_at).
    add_response(conn, "old_queued", "queued", ended_ago=None, updated_ago=OLD)
    add_response(conn, "old_in_progress", "in_progress", ended_ago=OLD)

    report = run_retention(scratch_url)

    kept = {"recent_no_end", "recent_end_old_update", "recent_completed", "old_queued"}
    kept.add("old_in_progress")
    assert report == RetentionReport(responses_deleted=5, event_logs_trimmed=0, jobs_deleted=0)
    assert ids(conn, "SELECT id FROM responses") == kept
    assert counts_by_response(conn, "response_steps") == dict.fromkeys(kept, 2)
    assert counts_by_response(conn, "response_event_batches") == dict.fromkeys(kept, 3)


def test_event_logs_of_terminal_responses_past_the_event_age_are_trimmed(
    scratch_url: str, conn: Conn
) -> None:
    add_response(conn, "middle_completed", "completed", ended_ago=MIDDLE)
    add_response(conn, "middle_failed", "failed", ended_ago=MIDDLE, events=5)
    add_response(conn, "middle_no_end", "incomplete", ended_ago=None, updated_ago=MIDDLE)
    add_response(conn, "middle_no_events", "completed", ended_ago=MIDDLE, events=0)
    add_response(conn, "recent_completed", "completed", ended_ago=RECENT)
    add_response(conn, "middle_in_progress", "in_progress", ended_ago=None, updated_ago=MIDDLE)
    add_response(conn, "middle_queued", "queued", ended_ago=None, updated_ago=MIDDLE)

    report = run_retention(scratch_url)

    # Three logs trimmed; the response without a log is not counted.
    assert report == RetentionReport(responses_deleted=0, event_logs_trimmed=3, jobs_deleted=0)
    assert ids(conn, "SELECT id FROM responses") == {
        "middle_completed",
        "middle_failed",
        "middle_no_end",
        "middle_no_events",
        "recent_completed",
        "middle_in_progress",
        "middle_queued",
    }
    assert counts_by_response(conn, "response_steps") == {
        "middle_completed": 2,
        "middle_failed": 2,
        "middle_no_end": 2,
        "middle_no_events": 2,
        "recent_completed": 2,
        "middle_in_progress": 2,
        "middle_queued": 2,
    }
    assert counts_by_response(conn, "response_event_batches") == {
        "recent_completed": 3,
        "middle_in_progress": 3,
        "middle_queued": 3,
    }
    # A second run finds nothing left to do.
    assert run_retention(scratch_url) == RetentionReport(0, 0, 0)


def test_finished_jobs_past_the_response_age_are_deleted(scratch_url: str, conn: Conn) -> None:
    deleted = {
        status: add_job(conn, status, deferred_ago=OLD + DAY, finished_ago=OLD)
        for status in ("succeeded", "failed", "cancelled", "aborted")
    }
    # The job of an old terminal response goes with it, at the same age.
    old_response_job = add_job(conn, "succeeded", deferred_ago=OLD + DAY, finished_ago=OLD)
    add_response(conn, "old_completed", "completed", ended_ago=OLD, job_id=old_response_job)
    # A periodic defer points at its job without ON DELETE; procrastinate's trigger unlinks it.
    periodic_job = add_job(conn, "succeeded", deferred_ago=OLD + DAY, finished_ago=OLD)
    conn.execute(
        "INSERT INTO procrastinate_periodic_defers (task_name, defer_timestamp, job_id)"
        " VALUES ('ferry:retention', 1, %s)",
        (periodic_job,),
    )

    kept = {
        # Deferred long ago, but finished recently: the newest event counts.
        "finished_recently": add_job(conn, "succeeded", deferred_ago=OLD, finished_ago=RECENT),
        "failed_recently": add_job(conn, "failed", deferred_ago=RECENT),
        "todo": add_job(conn, "todo", deferred_ago=OLD),
        "doing": add_job(conn, "doing", deferred_ago=OLD + DAY, finished_ago=OLD),
        # Its response is still running (the task raised before finishing the row): a cancel
        # of that response still needs the job.
        "failed_of_running": add_job(conn, "failed", deferred_ago=OLD + DAY, finished_ago=OLD),
    }
    add_response(
        conn, "old_in_progress", "in_progress", ended_ago=None, job_id=kept["failed_of_running"]
    )
    # Written without procrastinate, so no events: no evidence of age, kept (as procrastinate
    # itself keeps such jobs).
    row = conn.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, status)"
        " VALUES ('responses', 'ferry:run_response', 'succeeded') RETURNING id"
    ).fetchone()
    assert row is not None
    kept["no_events"] = int(row["id"])

    report = run_retention(scratch_url)

    gone = {*deleted.values(), old_response_job, periodic_job}
    assert report == RetentionReport(responses_deleted=1, event_logs_trimmed=0, jobs_deleted=6)
    assert ids(conn, "SELECT id FROM procrastinate_jobs") == set(kept.values())
    assert {name: job_status(conn, job) for name, job in kept.items()} == {
        "finished_recently": "succeeded",
        "failed_recently": "failed",
        "todo": "todo",
        "doing": "doing",
        "failed_of_running": "failed",
        "no_events": "succeeded",
    }
    # Their events went with them (cascade); the kept jobs' events are all there.
    assert ids(conn, "SELECT DISTINCT job_id FROM procrastinate_events") == set(kept.values()) - {
        kept["no_events"]
    }
    assert gone.isdisjoint(ids(conn, "SELECT job_id FROM procrastinate_events"))
    periodic = conn.execute("SELECT task_name, job_id FROM procrastinate_periodic_defers")
    assert periodic.fetchall() == [{"task_name": "ferry:retention", "job_id": None}]
    assert ids(conn, "SELECT id FROM responses") == {"old_in_progress"}


def add_delivery(conn: Conn, did: str, status: str, *, ended_ago: timedelta | None) -> None:
    """A webhook delivery (of an endpoint of its own) with two recorded attempts."""
    conn.execute(
        "INSERT INTO webhook_endpoints (id, owner, name, url, event_types, signing_secret)"
        " VALUES (%s, '', 'e', 'https://93.184.216.34/', '{response.completed}', 'whsec_x')",
        (f"whe_{did}",),
    )
    conn.execute(
        "INSERT INTO webhook_deliveries"
        " (id, endpoint_id, event_id, event_type, payload, status, attempts, created_at, ended_at)"
        " VALUES (%s, %s, %s, 'response.completed', '{}', %s, 2, now() - %s,"
        " now() - %s::interval)",
        (did, f"whe_{did}", f"evt_{did}", status, OLD + DAY, ended_ago),
    )
    for number in (1, 2):
        conn.execute(
            "INSERT INTO webhook_delivery_attempts (delivery_id, number, latency_ms)"
            " VALUES (%s, %s, 1.5)",
            (did, number),
        )


def test_ended_webhook_deliveries_past_the_response_age_go_with_their_attempts(
    scratch_url: str, conn: Conn
) -> None:
    add_delivery(conn, "old_delivered", "delivered", ended_ago=OLD)
    add_delivery(conn, "old_failed", "failed", ended_ago=OLD)
    add_delivery(conn, "recent_delivered", "delivered", ended_ago=RECENT)
    # Still being tried, however old: live work.
    add_delivery(conn, "old_pending", "pending", ended_ago=None)

    report = run_retention(scratch_url)

    assert report == RetentionReport(0, 0, 0, deliveries_deleted=2)
    kept = {"recent_delivered", "old_pending"}
    assert ids(conn, "SELECT id FROM webhook_deliveries") == kept
    assert ids(conn, "SELECT delivery_id FROM webhook_delivery_attempts") == kept
    assert len(ids(conn, "SELECT id FROM webhook_endpoints")) == 4  # endpoints stay


def _record_deleting_transactions(conn: Conn) -> None:
    """Log, per deleted row, the transaction that deleted it (scratch database only)."""
    conn.execute(
        """
        CREATE TABLE deletions (tbl text, key text, xid bigint);
        CREATE FUNCTION record_deletion() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO deletions
                VALUES (TG_TABLE_NAME, to_jsonb(OLD) ->> TG_ARGV[0], txid_current());
            RETURN OLD;
        END;
        $$;
        CREATE TRIGGER record_deletion AFTER DELETE ON responses
            FOR EACH ROW EXECUTE FUNCTION record_deletion('id');
        CREATE TRIGGER record_deletion AFTER DELETE ON response_event_batches
            FOR EACH ROW EXECUTE FUNCTION record_deletion('response_id');
        CREATE TRIGGER record_deletion AFTER DELETE ON procrastinate_jobs
            FOR EACH ROW EXECUTE FUNCTION record_deletion('id');
        """
    )


def _batch_sizes(conn: Conn, table: str) -> list[int]:
    """How many distinct keys of `table` each deleting transaction removed, in order."""
    rows = conn.execute(
        "SELECT xid, count(DISTINCT key) AS n FROM deletions WHERE tbl = %s"
        " GROUP BY xid ORDER BY xid",
        (table,),
    )
    return [row["n"] for row in rows]


def test_each_delete_runs_in_bounded_batches_until_a_short_one(
    scratch_url: str, conn: Conn
) -> None:
    for i in range(5):
        add_response(conn, f"old_{i}", "completed", ended_ago=OLD, events=0)
        add_response(conn, f"middle_{i}", "failed", ended_ago=MIDDLE, events=4)
    # A multiple of the batch size: the loop must go on after a full batch and stop at empty.
    jobs = [add_job(conn, "succeeded", deferred_ago=OLD) for _ in range(4)]

    _record_deleting_transactions(conn)
    report = run_retention(scratch_url, batch_size=2)

    assert report == RetentionReport(responses_deleted=5, event_logs_trimmed=5, jobs_deleted=4)
    assert ids(conn, "SELECT id FROM responses") == {f"middle_{i}" for i in range(5)}
    assert counts_by_response(conn, "response_event_batches") == {}
    assert ids(conn, "SELECT id FROM procrastinate_jobs") == set()
    # Each batch was its own transaction (one xid each) of at most two rows (logs, for the
    # trim), and each one's work was committed: the trigger's log of it is still there.
    assert _batch_sizes(conn, "responses") == [2, 2, 1]
    assert _batch_sizes(conn, "response_event_batches") == [2, 2, 1]
    assert _batch_sizes(conn, "procrastinate_jobs") == [2, 2]
    deleted_jobs = ids(conn, "SELECT key FROM deletions WHERE tbl = 'procrastinate_jobs'")
    assert deleted_jobs == {str(job) for job in jobs}


def test_rejects_ages_and_batch_sizes_that_would_misbehave(scratch_url: str, conn: Conn) -> None:
    add_response(conn, "recent_completed", "completed", ended_ago=RECENT)

    async def run(**kwargs: Any) -> RetentionReport:
        settings = Settings(database_url=scratch_url, db_pool_min_size=0, db_pool_max_size=1)
        pool = create_pool(settings, name="retention-test")
        await pool.open(wait=True)
        try:
            return await apply_retention(pool, **kwargs)
        finally:
            await pool.close()

    with pytest.raises(ValueError, match="ages must be positive"):
        asyncio.run(run(response_age_s=0, event_age_s=60))
    with pytest.raises(ValueError, match="ages must be positive"):
        asyncio.run(run(response_age_s=60, event_age_s=-1))
    with pytest.raises(ValueError, match="batch_size"):
        asyncio.run(run(response_age_s=60, event_age_s=60, batch_size=0))
    assert ids(conn, "SELECT id FROM responses") == {"recent_completed"}
