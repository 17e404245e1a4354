"""procrastinate tasks run by the worker."""

from __future__ import annotations

import asyncio
import logging

import procrastinate
from procrastinate import JobContext

from app.config import Settings
from app.engine.worker_side import WorkerSide
from app.store.db import DATABASE_OUTAGES
from app.store.queue import DELIVER_WEBHOOK, RUN_RESPONSE

log = logging.getLogger(__name__)


async def run_response(context: JobContext, response_id: str) -> None:
    """Run (or resume) a background, flex or handed-over response.

    A cancel aborts the job, cancelling this task; so does a worker shutdown past its grace
    period, after which the job is retried (the response resumes on another worker).
    """
    worker_side: WorkerSide = context.additional_context["worker_side"]
    await worker_side.run_deferred(response_id)


async def deliver_webhook(context: JobContext, delivery_id: str) -> None:
    """One attempt at a webhook delivery; a failed one defers the next attempt itself."""
    worker_side: WorkerSide = context.additional_context["worker_side"]
    await worker_side.deliver_webhook(delivery_id)


async def recover(context: JobContext, timestamp: int) -> None:
    """Retry the jobs of dead workers; hand inline work of dead API processes to workers."""
    worker_side: WorkerSide = context.additional_context["worker_side"]
    report = await worker_side.recover()
    if any(report.values()):
        log.info("recovery sweep", extra=report)


async def apply_retention(context: JobContext, timestamp: int) -> None:
    """Hourly: delete old terminal responses, old event logs and finished jobs."""
    worker_side: WorkerSide = context.additional_context["worker_side"]
    await worker_side.apply_retention()


def build_blueprint(settings: Settings) -> procrastinate.Blueprint:
    """The worker's tasks; schedules and retry limits come from the settings."""
    blueprint = procrastinate.Blueprint()
    # Retried when cancelled by a shutdown or cut off from the database; a dead worker's
    # job is retried by `recover`, and a response whose job ended anyway is re-queued by it.
    retry_on_interruption = procrastinate.RetryStrategy(
        max_attempts=settings.max_attempts,
        # procrastinate annotates these as `type[Exception]`, but its worker catches
        # BaseException and matches them with isinstance, so CancelledError works.
        retry_exceptions=[asyncio.CancelledError, *DATABASE_OUTAGES],  # type: ignore[list-item]
    )
    blueprint.task(name=RUN_RESPONSE, pass_context=True, retry=retry_on_interruption)(run_response)
    blueprint.task(name=DELIVER_WEBHOOK, pass_context=True, retry=retry_on_interruption)(
        deliver_webhook
    )
    every = settings.recovery_interval_s
    blueprint.periodic(cron=f"* * * * * */{every}", periodic_id="recovery")(
        blueprint.task(name="recover", pass_context=True, queueing_lock="ferry-recovery")(recover)
    )
    blueprint.periodic(cron="17 * * * *", periodic_id="retention")(
        blueprint.task(name="apply_retention", pass_context=True, queueing_lock="ferry-retention")(
            apply_retention
        )
    )
    return blueprint
