"""What the worker asks of the engine: run deferred work (background, flex, handed-over
inline responses), deliver webhooks, sweep for work nobody owns any more, and apply
retention.

The API's side of the same responses is `api_side`; the two share the loop and the store,
never each other.
"""

from __future__ import annotations

import asyncio
import logging

from app import metrics
from app.engine.cut_items import closing_events
from app.engine.ending import end_from_outside
from app.engine.events import OPENING_EVENT_TYPES, DiscardSink, EventLogSink, announced_items
from app.engine.loop import RunMode
from app.engine.runtime import Runtime
from app.engine.webhook_delivery import WebhookDeliverer
from app.logs import current_response_id
from app.shapes import ErrorInfo, Event
from app.statuses import ResponseStatus
from app.store.queue import BACKGROUND_QUEUE, FLEX_QUEUE, RUN_RESPONSE_TASK
from app.store.retention import RetentionReport, apply_retention
from app.store.rows import StoredResponse

log = logging.getLogger(__name__)


class WorkerSide:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.jobs = runtime.jobs
        self.settings = runtime.settings
        self.deliverer = WebhookDeliverer(
            runtime.webhooks, runtime.jobs, runtime.webhook_sender, runtime.settings
        )

    # --- running ---------------------------------------------------------------------

    async def run_deferred(self, response_id: str) -> None:
        """Run (or resume) a response; its event log is the sink when it streams.

        Whatever earlier attempts finished is kept: the loop carries on after the last
        finished step. A cancellation (the worker shutting down) hands the response back
        for another attempt instead of ending it.
        """
        token = current_response_id.set(response_id)
        try:
            stored = await self.store.get_any_owner(response_id)
            if stored is None or stored.is_terminal:
                log.info("nothing to run: response gone or already ended")
                return
            loop = self.runtime.loop
            if not (stored.background and stored.stream):
                await loop.run(stored, DiscardSink(), RunMode.WORKER)
                return
            sink = EventLogSink(
                self.runtime.run_store,
                stored.id,
                self.settings.event_flush_interval_s,
                self.settings.event_flush_max_events,
            )
            try:
                if stored.status == ResponseStatus.QUEUED:
                    # Never started: its log holds just the opening events, nothing to close
                    # (one read less on the way to starting it).
                    next_number, announced = len(OPENING_EVENT_TYPES), {}
                else:
                    logged = await self._close_cut_items(stored, sink)
                    next_number = logged[-1]["sequence_number"] + 1 if logged else 0
                    announced = announced_items(logged)
                await loop.run(
                    stored,
                    sink,
                    RunMode.WORKER,
                    next_sequence_number=next_number,
                    announced=announced,
                )
            finally:
                await asyncio.shield(sink.aclose())
        finally:
            current_response_id.reset(token)

    async def _close_cut_items(self, stored: StoredResponse, sink: EventLogSink) -> list[Event]:
        """Close the items an earlier attempt left open in the log, shown as the request
        asked (sealed reasoning); the log as it is now."""
        logged = await self.store.events_after(stored.id, -1)
        closing = closing_events(logged)
        view = await self.runtime.sealing_keys.view_for(stored.request, stored.owner)
        for event in closing:
            if event["type"] == "response.output_item.done":
                event["item"] = view(event["item"])
            await sink.send(event)
        await sink.flush()
        return [*logged, *closing]

    async def deliver_webhook(self, delivery_id: str) -> None:
        """One attempt at a webhook delivery (`WebhookDeliverer`)."""
        await self.deliverer.deliver(delivery_id)

    # --- recovery --------------------------------------------------------------------

    async def recover(self) -> dict[str, int]:
        """One sweep: retry the jobs of dead workers (responses and webhook deliveries), stop
        overrunning jobs, and hand inline responses whose API process died over to a worker.
        Run by a periodic task."""
        report = {
            "retried": 0,
            "gave_up": 0,
            "overran": 0,
            "handed_over": 0,
            "deliveries_retried": 0,
        }
        for job in await self.jobs.stalled_response_jobs(self.settings.stall_threshold_s):
            response_id = str(job.task_kwargs["response_id"])
            if job.attempts + 1 >= self.settings.max_attempts:
                await self._fail(
                    response_id, "max_attempts", f"gave up after {job.attempts + 1} attempts"
                )
                report["gave_up"] += 1
            # Retried even when given up on: the attempt finds the response ended and stops,
            # and the job leaves `doing`.
            await self.jobs.retry(job)
            report["retried"] += 1
            log.warning("retrying the job of a dead worker", extra={"response_id": response_id})
        for job_id, response_id in await self.store.overrunning_jobs(
            RUN_RESPONSE_TASK, self.settings.max_run_time_s
        ):
            message = f"the response ran longer than {self.settings.max_run_time_s:g}s"
            await self._fail(response_id, "timeout", message)
            report["overran"] += 1
            log.warning(
                "stopped an overrunning job", extra={"response_id": response_id, "job_id": job_id}
            )
        for response_id in await self.store.lapsed_inline_leases():
            if await self._hand_over(response_id):
                report["handed_over"] += 1
        # A delivery cut off by its worker's death is attempted again (at least once).
        for job in await self.jobs.stalled_delivery_jobs(self.settings.stall_threshold_s):
            await self.jobs.retry(job)
            report["deliveries_retried"] += 1
        report["requeued"], report["orphans_failed"] = await self._requeue_orphans()
        metrics.recoveries(report)
        return report

    async def _requeue_orphans(self) -> tuple[int, int]:
        """Enforce the invariant that every running response has a live owner: queue a new
        job for each one that has none (its loop resumes from the persisted steps), or fail
        it after MAX_ATTEMPTS recoveries. Runs after the steps above, which give most
        responses back their owner; this catches whatever they do not."""
        requeued, hopeless = 0, []
        async with self.store.transaction() as conn:
            orphans = await self.store.orphaned_responses(self.settings.stall_threshold_s, conn)
            for orphan in orphans:
                if orphan.recoveries >= self.settings.max_attempts:
                    hopeless.append(orphan)
                    continue
                await self.store.count_recovery(orphan.id, conn)
                queue = FLEX_QUEUE if orphan.service_tier == "flex" else BACKGROUND_QUEUE
                job_id = await self.jobs.defer_response(orphan.id, queue, conn)
                await self.store.set_job_id(orphan.id, job_id, conn)
                requeued += 1
                log.warning(
                    "queued a response nothing was running", extra={"response_id": orphan.id}
                )
        for orphan in hopeless:
            message = f"nothing was left running it after {orphan.recoveries} recoveries"
            await self._fail(orphan.id, "orphaned", message)
        return requeued, len(hopeless)

    async def _fail(self, response_id: str, code: str, message: str) -> None:
        stored = await self.store.get_any_owner(response_id)
        if stored is not None and not stored.is_terminal:
            error: ErrorInfo = {"code": code, "message": message}
            view = await self.runtime.sealing_keys.view_for(stored.request, stored.owner)
            await end_from_outside(
                self.store, self.jobs, stored, status=ResponseStatus.FAILED, error=error, view=view
            )

    async def _hand_over(self, response_id: str) -> bool:
        """Give an inline response whose API process died to a worker, to resume it."""
        async with self.store.transaction() as conn:
            if not await self.store.take_over_lease(response_id, conn):
                return False
            job_id = await self.jobs.defer_response(response_id, BACKGROUND_QUEUE, conn)
            await self.store.set_job_id(response_id, job_id, conn)
        log.warning("inline response handed over to a worker", extra={"response_id": response_id})
        return True

    # --- housekeeping ----------------------------------------------------------------

    async def apply_retention(self) -> RetentionReport:
        """Delete what has outlived RETENTION_DAYS / EVENT_RETENTION_HOURS; nothing running."""
        return await apply_retention(
            self.store.pool,
            response_age_s=self.settings.retention_days * 86400,
            event_age_s=self.settings.event_retention_hours * 3600,
        )
