"""What a Prometheus scrape returns: the recorded families (`app.metrics`), plus what is read
live at scrape time, with a short timeout, from the database and the connection pool.

    registry = scrape_registry(pool, asyncio.get_running_loop(), timeout_s)
    body = await asyncio.to_thread(generate_latest, registry)   # never on the event loop

The API serves it at /metrics; a worker serves it on WORKER_METRICS_PORT when that is set
(`worker_metrics_server`). A database that does not answer in time leaves the live queue
gauges out of that scrape and counts `ferry_scrape_errors_total{source="database"}`; the
scrape itself still succeeds.

With PROMETHEUS_MULTIPROC_DIR set, the recorded families are every process's (read from the
directory); the live values are always the scraping process's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import (
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector, CollectorRegistry
from psycopg_pool import AsyncConnectionPool

from app import metrics
from app.config import Settings
from app.store.db import within
from app.store.queue import BACKGROUND_QUEUE, FLEX_QUEUE
from app.store.responses import ResponseStore
from app.store.rows import QueueStats

log = logging.getLogger(__name__)

# The `queue` label of each job queue: the background (default-tier) queue, and flex.
QUEUE_LABELS = {BACKGROUND_QUEUE: "default", FLEX_QUEUE: "flex"}
# Beyond the database's own timeout, how long a scrape waits for the event loop to answer.
_LOOP_GRACE_S = 1.0


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


@dataclass(frozen=True)
class LiveValues:
    pool: dict[str, int]
    queues: dict[str, QueueStats] | None  # None: the database did not answer in time


class LiveCollector(Collector):
    """Reads queue depth, the oldest queued job and the pool's use when scraped.

    `collect` runs on the scraping thread; the reads run on the process's event loop (the
    pool belongs to it), and the thread waits for them, bounded.
    """

    def __init__(
        self, pool: AsyncConnectionPool, loop: asyncio.AbstractEventLoop, timeout_s: float
    ) -> None:
        self.pool = pool
        self.loop = loop
        self.timeout_s = timeout_s

    def collect(self) -> Iterable[Metric]:
        future = asyncio.run_coroutine_threadsafe(self.read(), self.loop)
        try:
            live = future.result(timeout=self.timeout_s + _LOOP_GRACE_S)
        except Exception:  # the loop did not answer in time, or is closing: report nothing
            future.cancel()
            metrics.scrape_error("database")
            return []
        return list(_families(live))

    async def read(self) -> LiveValues:
        pool = self.pool.get_stats()
        try:
            queues = await within(ResponseStore(self.pool).queue_stats(), self.timeout_s)
        except Exception as exc:  # a scrape reports what it can, whatever the database did
            log.warning("scrape could not read the queues", extra={"error": type(exc).__name__})
            metrics.scrape_error("database")
            queues = None
        return LiveValues(pool, queues)


def _families(live: LiveValues) -> Iterator[Metric]:
    pool = live.pool
    connections = GaugeMetricFamily(
        "ferry_db_pool_connections",
        "This process's database connections, in use or idle.",
        labels=["state"],
    )
    in_use = pool.get("pool_size", 0) - pool.get("pool_available", 0)
    connections.add_metric(["in_use"], in_use)
    connections.add_metric(["idle"], pool.get("pool_available", 0))
    yield connections
    yield GaugeMetricFamily(
        "ferry_db_pool_waiting",
        "Requests of this process waiting for a database connection.",
        value=pool.get("requests_waiting", 0),
    )
    yield GaugeMetricFamily(
        "ferry_db_pool_max",
        "Most database connections this process opens (DB_POOL_MAX_SIZE).",
        value=pool.get("pool_max", 0),
    )
    if live.queues is None:
        return
    depth = GaugeMetricFamily(
        "ferry_queue_depth", "Jobs waiting in each queue (default, flex).", labels=["queue"]
    )
    oldest = GaugeMetricFamily(
        "ferry_queue_oldest_age_seconds",
        "How long the longest-waiting job of each queue has waited (0 when none waits).",
        labels=["queue"],
    )
    for queue, label in QUEUE_LABELS.items():
        stats = live.queues.get(queue, QueueStats(0, 0.0))
        depth.add_metric([label], stats.depth)
        oldest.add_metric([label], stats.oldest_age_s)
    yield depth
    yield oldest


def scrape_registry(
    pool: AsyncConnectionPool, loop: asyncio.AbstractEventLoop, timeout_s: float
) -> CollectorRegistry:
    """Everything a scrape of this process reports; collect it off the event loop."""
    registry = CollectorRegistry()
    # First: a failed read it counts shows in the same scrape's ferry_scrape_errors_total.
    registry.register(LiveCollector(pool, loop, timeout_s))
    if multiprocess_dir():
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(metrics.REGISTRY)
        # About this process, so only meaningful when it is the only one reporting.
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry


def process_exiting() -> None:
    """Multiprocess mode: this process's live gauges stop counting once it is gone."""
    if multiprocess_dir():
        mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


@contextlib.asynccontextmanager
async def worker_metrics_server(
    pool: AsyncConnectionPool, settings: Settings
) -> AsyncIterator[None]:
    """Serve this process's metrics on WORKER_METRICS_HOST:WORKER_METRICS_PORT (a thread)
    while the block runs; nothing when the port is 0."""
    port = settings.worker_metrics_port
    try:
        if not port:
            yield
            return
        loop = asyncio.get_running_loop()
        registry = scrape_registry(pool, loop, settings.db_probe_timeout_s)
        server, thread = start_http_server(
            port, addr=settings.worker_metrics_host, registry=registry
        )
        log.info("metrics served", extra={"host": settings.worker_metrics_host, "port": port})
        try:
            yield
        finally:
            # Off the loop: a scrape under way waits for the loop to read its live values.
            await asyncio.to_thread(server.shutdown)
            server.server_close()
            thread.join(timeout=5)
    finally:
        process_exiting()
