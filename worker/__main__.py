"""`python -m worker`: a procrastinate worker process.

It stops on SIGTERM/SIGINT: no new jobs are taken, running ones get a bounded grace period.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket

from app.config import get_settings
from app.logs import configure_logging
from app.store.db import create_pool
from app.store.queue import create_job_app

log = logging.getLogger("worker")


async def run_worker(concurrency: int) -> None:
    settings = get_settings()
    pool = create_pool(settings, name="ferry-worker")
    await pool.open(wait=True)
    job_app = create_job_app()
    name = f"worker:{socket.gethostname()}:{os.getpid()}"
    try:
        async with job_app.open_async(pool):
            log.info("worker ready", extra={"concurrency": concurrency, "worker": name})
            await job_app.run_worker_async(
                concurrency=concurrency,
                name=name,
                install_signal_handlers=True,
                shutdown_graceful_timeout=settings.worker_shutdown_timeout_s,
            )
    finally:
        await pool.close()
        log.info("worker stopped", extra={"worker": name})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    parser.add_argument(
        "--concurrency", type=int, default=None, help="jobs run at once (WORKER_CONCURRENCY)"
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level)
    asyncio.run(run_worker(args.concurrency or settings.worker_concurrency))


if __name__ == "__main__":
    main()
