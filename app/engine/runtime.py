"""The runtime of one process: everything the API and the worker share, built and torn
down in one place.

    async with open_runtime(settings, role=Role.API) as runtime:
        ...

It opens the database pool, the job queue on that pool, the upstream client (and what the
process learns of the upstream's models), the tool registry and its HTTP client, the keys
that seal reasoning, the response loop over all of them, the event notifier (which
connects only when a first stream is tailed, so a worker never holds a LISTEN), and what
webhooks need: their store, the outbox every ending goes through, and the client that
sends them.
"""

from __future__ import annotations

import contextlib
import enum
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import procrastinate
from psycopg_pool import AsyncConnectionPool

from app import ids, metrics
from app.config import Settings
from app.engine.chat.client import UpstreamClient
from app.engine.context_window import ContextWindow
from app.engine.loop import ResponseLoop
from app.engine.sealing import KeyRing
from app.engine.tools.http_tool import HttpToolRunner
from app.engine.tools.registry import ToolRegistry, load_tools
from app.engine.webhook_sender import WebhookSender
from app.engine.webhook_urls import UrlPolicy
from app.store.api_keys import KeyStore
from app.store.db import create_pool
from app.store.notify import EventNotifier
from app.store.queue import JobQueue, create_job_app
from app.store.responses import ResponseStore
from app.store.webhooks import WebhookOutbox, WebhookStore


class Role(enum.StrEnum):
    API = "api"
    WORKER = "worker"


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    role: Role
    # Names this process: the holder of inline leases (API), the procrastinate worker name.
    instance_id: str
    pool: AsyncConnectionPool
    store: ResponseStore  # for requests: a connection within DB_POOL_TIMEOUT_S, or 503
    run_store: ResponseStore  # for running responses: waits up to DB_RUN_WAIT_S
    api_keys: KeyStore  # API keys kept in the database, and their owners' counters
    job_app: procrastinate.App
    jobs: JobQueue
    notifier: EventNotifier
    tools: ToolRegistry
    sealing_keys: KeyRing  # seals and opens reasoning (`encrypted_content`)
    upstream: UpstreamClient
    context_window: ContextWindow  # models' context sizes, token counts, truncation
    loop: ResponseLoop
    webhooks: WebhookStore
    webhook_sender: WebhookSender


def _instance_id(role: Role) -> str:
    # The random tail tells apart two processes that reuse a pid (e.g. in containers).
    return f"{role}:{socket.gethostname()}:{os.getpid()}:{ids.new_id('inst')[-8:]}"


@contextlib.asynccontextmanager
async def open_runtime(settings: Settings, *, role: Role) -> AsyncIterator[Runtime]:
    """Open everything the process needs; close it all, in reverse order, on the way out."""
    tools = load_tools(settings.tools_file)  # a bad tools file fails before anything opens
    metrics.configure(models=settings.metrics_model_set)
    async with contextlib.AsyncExitStack() as stack:
        pool = create_pool(settings, name=f"ferry-{role}")
        await pool.open(wait=True)
        stack.push_async_callback(pool.close)
        upstream = UpstreamClient(settings)
        stack.push_async_callback(upstream.aclose)
        tool_runner = HttpToolRunner()
        stack.push_async_callback(tool_runner.aclose)
        job_app = create_job_app()
        await job_app.open_async(pool)
        stack.push_async_callback(job_app.close_async)
        notifier = EventNotifier(settings.database_url)
        stack.push_async_callback(notifier.stop)
        jobs = JobQueue(job_app)
        outbox = WebhookOutbox(jobs, all_responses=settings.webhook_all_responses)
        store = ResponseStore(pool, outbox=outbox)
        # Running work is patient: under a burst its writes queue for a connection rather
        # than fail the response, while requests still get a quick 503 in an outage.
        run_store = ResponseStore(pool, wait_s=settings.db_run_wait_s, outbox=outbox)
        webhook_sender = WebhookSender(
            UrlPolicy(settings.webhook_allowed_prefixes), settings.webhook_timeout_s
        )
        stack.push_async_callback(webhook_sender.aclose)
        sealing_keys = KeyRing(settings.reasoning_key_list, store)
        context_window = ContextWindow(upstream, settings)
        yield Runtime(
            settings=settings,
            role=role,
            instance_id=_instance_id(role),
            pool=pool,
            store=store,
            job_app=job_app,
            jobs=jobs,
            notifier=notifier,
            tools=tools,
            run_store=run_store,
            sealing_keys=sealing_keys,
            api_keys=KeyStore(pool),
            upstream=upstream,
            context_window=context_window,
            loop=ResponseLoop(
                run_store,
                upstream,
                settings,
                tools=tools,
                tool_runner=tool_runner,
                keys=sealing_keys,
                window=context_window,
            ),
            webhooks=WebhookStore(pool),
            webhook_sender=webhook_sender,
        )
