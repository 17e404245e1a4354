"""The job queue: procrastinate, on the process's own connection pool.

Background and flex responses are jobs of one task, `ferry:run_response`, on two queues;
flex jobs have a lower priority, so they run when nothing else waits. Webhook deliveries
are jobs of `ferry:deliver_webhook`, one for each attempt, on their own queue.
"""

from __future__ import annotations

import procrastinate
from procrastinate import jobs
from psycopg import AsyncConnection

TASK_NAMESPACE = "ferry"
RUN_RESPONSE = "run_response"
RUN_RESPONSE_TASK = f"{TASK_NAMESPACE}:{RUN_RESPONSE}"  # as procrastinate names it
BACKGROUND_QUEUE = "responses"
FLEX_QUEUE = "flex"
QUEUE_PRIORITY = {BACKGROUND_QUEUE: 0, FLEX_QUEUE: -10}
DELIVER_WEBHOOK = "deliver_webhook"
DELIVER_WEBHOOK_TASK = f"{TASK_NAMESPACE}:{DELIVER_WEBHOOK}"
WEBHOOK_QUEUE = "webhooks"


def create_job_app() -> procrastinate.App:
    """A job app not yet opened; open it with `app.open_async(pool)` to share our pool."""
    return procrastinate.App(connector=procrastinate.PsycopgConnector())


class JobQueue:
    def __init__(self, job_app: procrastinate.App) -> None:
        self.job_app = job_app

    async def defer_response(self, response_id: str, queue: str, conn: AsyncConnection) -> int:
        """Defer the job that runs a response, inside the caller's transaction."""
        deferrer = self.job_app.configure_task(
            RUN_RESPONSE_TASK, queue=queue, priority=QUEUE_PRIORITY[queue], connection=conn
        )
        return await deferrer.defer_async(response_id=response_id)

    async def defer_delivery(
        self, delivery_id: str, conn: AsyncConnection, *, delay_s: float = 0.0
    ) -> int:
        """Defer an attempt at a webhook delivery, inside the caller's transaction."""
        deferrer = self.job_app.configure_task(
            DELIVER_WEBHOOK_TASK,
            queue=WEBHOOK_QUEUE,
            connection=conn,
            schedule_in={"milliseconds": round(delay_s * 1000)} if delay_s > 0 else None,
        )
        return await deferrer.defer_async(delivery_id=delivery_id)

    async def abort(self, job_id: int, conn: AsyncConnection) -> None:
        """Cancel a waiting job, or ask the worker running it to stop (it is cancelled)."""
        await self.job_app.job_manager.cancel_job_by_id_async(job_id, abort=True, connection=conn)

    async def stalled_response_jobs(self, stall_threshold_s: float) -> list[jobs.Job]:
        """Response jobs whose worker stopped sending heartbeats (it died)."""
        return await self._stalled(RUN_RESPONSE_TASK, stall_threshold_s)

    async def stalled_delivery_jobs(self, stall_threshold_s: float) -> list[jobs.Job]:
        """Webhook delivery jobs whose worker died mid-attempt."""
        return await self._stalled(DELIVER_WEBHOOK_TASK, stall_threshold_s)

    async def _stalled(self, task_name: str, stall_threshold_s: float) -> list[jobs.Job]:
        found = await self.job_app.job_manager.get_stalled_jobs(
            task_name=task_name, seconds_since_heartbeat=stall_threshold_s
        )
        return list(found)

    async def retry(self, job: jobs.Job) -> None:
        """Put a stalled job back in its queue, for any worker to pick up."""
        await self.job_app.job_manager.retry_job(job)
