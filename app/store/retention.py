"""Retention: deletes old terminal responses, old event logs, finished procrastinate jobs
and ended webhook deliveries.

Each delete runs in batches, each batch its own committed transaction, so a run holds row
locks on at most one batch at a time and a run cut short keeps what it already did.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from app.store.queries import load_queries

log = logging.getLogger(__name__)

RETENTION_QUERIES = load_queries(Path(__file__).with_name("retention.sql"))


@dataclass
class RetentionReport:
    """What one run deleted: whole responses, event logs (counted by response), jobs, and
    webhook deliveries (with their attempts)."""

    responses_deleted: int
    event_logs_trimmed: int
    jobs_deleted: int
    deliveries_deleted: int = 0


async def _delete_in_batches(
    pool: AsyncConnectionPool, name: str, age_s: float, batch_size: int
) -> int:
    """Run one delete until a batch comes back short; the total it deleted."""
    total = 0
    params: dict[str, Any] = {"age_s": age_s, "batch": batch_size}
    while True:
        # A connection a batch: between batches it goes back to the pool, so a long run
        # never keeps one from the API or the worker.
        async with (
            pool.connection() as conn,
            conn.transaction(),
            conn.cursor(row_factory=dict_row) as cur,
        ):
            await cur.execute(RETENTION_QUERIES[name], params)
            row = await cur.fetchone()
        deleted = int(row["deleted"]) if row is not None else 0
        total += deleted
        # Short means nothing eligible was left when it ran (locked rows were skipped; the
        # next run gets them). Stopping there, not at zero, saves a last empty scan.
        if deleted < batch_size:
            return total


async def apply_retention(
    pool: AsyncConnectionPool,
    *,
    response_age_s: float,
    event_age_s: float,
    batch_size: int = 500,
) -> RetentionReport:
    """Delete terminal responses older than `response_age_s` (with steps and events), the
    event logs of terminal responses older than `event_age_s`, and procrastinate jobs and
    webhook deliveries that ended more than `response_age_s` ago. Responses still queued or
    in progress, their jobs, and pending deliveries are never touched."""
    if response_age_s <= 0 or event_age_s <= 0:
        # Zero or less would delete every terminal response, including one just finished.
        raise ValueError("retention ages must be positive")
    if batch_size < 1:
        # A batch of zero rows is never "short": the loop would not end.
        raise ValueError("batch_size must be at least 1")
    # Whole responses first: their logs go with them, so the trim has less left to do.
    responses = await _delete_in_batches(
        pool, "delete_expired_responses", response_age_s, batch_size
    )
    event_logs = await _delete_in_batches(pool, "trim_expired_event_logs", event_age_s, batch_size)
    jobs = await _delete_in_batches(pool, "delete_expired_jobs", response_age_s, batch_size)
    deliveries = await _delete_in_batches(
        pool, "delete_expired_webhook_deliveries", response_age_s, batch_size
    )
    report = RetentionReport(
        responses_deleted=responses,
        event_logs_trimmed=event_logs,
        jobs_deleted=jobs,
        deliveries_deleted=deliveries,
    )
    log.info(
        "retention applied",
        extra={
            "responses_deleted": responses,
            "event_logs_trimmed": event_logs,
            "jobs_deleted": jobs,
            "deliveries_deleted": deliveries,
        },
    )
    return report
