"""A worker process (`ferry worker`, `python -m worker`): a procrastinate worker.

It stops on SIGTERM/SIGINT: no new jobs are taken, running ones get a bounded grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import procrastinate
from procrastinate.app import WorkerOptions

from app.config import Settings
from app.engine.runtime import Role, open_runtime
from app.engine.worker_side import WorkerSide
from app.scrape import worker_metrics_server
from app.store.queue import TASK_NAMESPACE
from worker.tasks import build_blueprint

log = logging.getLogger("worker")

OUTAGE_RETRY_FIRST_S = 0.5
OUTAGE_RETRY_MAX_S = 15.0


async def run_worker(settings: Settings) -> None:
    concurrency = settings.worker_concurrency
    async with (
        open_runtime(settings, role=Role.WORKER) as runtime,
        worker_metrics_server(runtime.pool, settings),
    ):
        job_app = runtime.job_app
        job_app.add_tasks_from(build_blueprint(settings), namespace=TASK_NAMESPACE)
        name = runtime.instance_id
        options: WorkerOptions = {
            "concurrency": concurrency,
            "name": name,
            # Ours are installed before "worker ready": procrastinate's would come later,
            # leaving a window in which SIGTERM kills the process outright.
            "install_signal_handlers": False,
            "shutdown_graceful_timeout": settings.worker_shutdown_timeout_s,
            "additional_context": {"worker_side": WorkerSide(runtime)},
            "update_heartbeat_interval": settings.worker_heartbeat_s,
            "stalled_worker_timeout": settings.stall_threshold_s,
            "fetch_job_polling_interval": settings.worker_poll_interval_s,
        }
        worker = asyncio.create_task(_work_through_outages(job_app, options))
        event_loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            # procrastinate treats a cancelled run as a graceful stop (bounded above).
            event_loop.add_signal_handler(sig, worker.cancel)
        log.info("worker ready", extra={"concurrency": concurrency, "worker": name})
        with contextlib.suppress(asyncio.CancelledError):
            await worker
    log.info("worker stopped", extra={"worker": name})


async def _work_through_outages(job_app: procrastinate.App, options: WorkerOptions) -> None:
    """Run the procrastinate worker; when the database goes away, wait and run it again.

    procrastinate's worker stops on a lost connection; restarting it here means a Postgres
    restart needs no restart of ours. Jobs cut off by the outage are found stalled and
    retried by the recovery sweep. Cancelling this task is the graceful stop.
    """
    delay = OUTAGE_RETRY_FIRST_S
    while True:
        try:
            # Returns only when procrastinate stopped by itself (one of its side tasks lost
            # the database); a requested stop cancels this task instead.
            await job_app.run_worker_async(**options)
            log.warning("the worker stopped on its own; running it again")
        except procrastinate.exceptions.ConnectorException:
            log.warning("lost the database; running the worker again", exc_info=True)
        await asyncio.sleep(delay)
        delay = min(delay * 2, OUTAGE_RETRY_MAX_S)
