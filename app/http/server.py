"""The starlette application: routes, error envelopes, and the process's shared resources."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator

import psycopg
import uvicorn
from psycopg_pool import PoolTimeout
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app import ids
from app.config import Settings
from app.engine.errors import RequestError
from app.engine.loop import ResponseLoop
from app.engine.service import ResponsesService
from app.engine.tools.http_tool import HttpToolRunner
from app.engine.tools.registry import load_tools
from app.engine.upstream import UpstreamClient
from app.http import errors
from app.http.routes import routes
from app.store.db import create_pool
from app.store.notify import EventNotifier
from app.store.queue import JobQueue, create_job_app
from app.store.responses import ResponseStore

log = logging.getLogger(__name__)


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


class FerryServer(uvicorn.Server):
    """uvicorn, telling the app's open streams to wind up as soon as shutdown begins.

    Otherwise a stream is simply cut when the graceful-shutdown bound runs out; this way
    each one ends with a last event saying where the response goes on.
    """

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        service = getattr(getattr(self.config.app, "state", None), "service", None)
        if isinstance(service, ResponsesService):
            service.stopping.set()
        await super().shutdown(sockets=sockets)


def build_app(settings: Settings) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = create_pool(settings, name="ferry-api")
        await pool.open(wait=True)
        upstream = UpstreamClient(settings)
        instance_id = f"api:{socket.gethostname()}:{os.getpid()}:{ids.new_id('inst')[-8:]}"
        store = ResponseStore(pool)
        job_app = create_job_app()
        await job_app.open_async(pool)
        notifier = EventNotifier(settings.database_url)
        await notifier.start()
        tool_runner = HttpToolRunner()
        app.state.settings = settings
        app.state.service = ResponsesService(
            store,
            ResponseLoop(
                store,
                upstream,
                settings,
                tools=load_tools(settings.tools_file),
                tool_runner=tool_runner,
            ),
            settings,
            instance_id,
            jobs=JobQueue(job_app),
            notifier=notifier,
        )
        app.state.inline_tasks = set()
        if settings.api_key_set:
            log.info("API keys required", extra={"keys": len(settings.api_key_set)})
        else:
            log.warning("API_KEYS is unset: the API is open to anyone who can reach it")
        log.info("api ready", extra={"upstream": settings.upstream_base_url})
        try:
            yield
        finally:
            await _drain(app.state.inline_tasks, settings.shutdown_timeout_s)
            await notifier.stop()
            await job_app.close_async()
            await tool_runner.aclose()
            await upstream.aclose()
            await pool.close()

    return Starlette(
        routes=[Route("/health", health), *routes],
        lifespan=lifespan,
        exception_handlers={
            RequestError: errors.on_request_error,
            psycopg.OperationalError: errors.on_database_unavailable,
            PoolTimeout: errors.on_database_unavailable,
            HTTPException: errors.on_http_exception,
            Exception: errors.on_unexpected,
        },
    )


async def _drain(tasks: set[asyncio.Task[object]], timeout_s: float) -> None:
    """Give inline work a bounded time to finish; cancel the rest (recorded as cancelled)."""
    if not tasks:
        return
    _, pending = await asyncio.wait(set(tasks), timeout=timeout_s)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5)
