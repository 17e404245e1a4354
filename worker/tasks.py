"""procrastinate tasks run by the worker."""

from __future__ import annotations

import procrastinate
from procrastinate import JobContext

from app.engine.service import ResponsesService
from app.store.queue import RUN_RESPONSE

blueprint = procrastinate.Blueprint()


@blueprint.task(name=RUN_RESPONSE, pass_context=True)
async def run_response(context: JobContext, response_id: str) -> None:
    """Run a background or flex response. A cancel aborts the job, cancelling this task."""
    service: ResponsesService = context.additional_context["service"]
    await service.run_deferred(response_id)


@blueprint.periodic(cron="17 * * * *", periodic_id="retention")
@blueprint.task(name="apply_retention", pass_context=True, queueing_lock="ferry-retention")
async def apply_retention(context: JobContext, timestamp: int) -> None:
    """Hourly: delete old terminal responses, old event logs and finished jobs."""
    service: ResponsesService = context.additional_context["service"]
    await service.apply_retention()
