"""The starlette application: routes, error envelopes, and the process's shared resources."""

from __future__ import annotations

import asyncio
import contextlib
import logging
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

from app.config import Settings
from app.engine.api_side import ApiSide
from app.engine.errors import RequestError
from app.engine.runtime import Role, open_runtime
from app.engine.webhook_endpoints import WebhookEndpoints
from app.http import errors
from app.http.routes import routes
from app.http.webhook_routes import webhook_routes

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
        if isinstance(service, ApiSide):
            service.stopping.set()
        await super().shutdown(sockets=sockets)


def build_app(settings: Settings) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_runtime(settings, role=Role.API) as runtime:
            app.state.settings = settings
            app.state.service = ApiSide(runtime)
            app.state.webhook_endpoints = WebhookEndpoints(runtime.webhooks, runtime.webhook_sender)
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

    return Starlette(
        routes=[Route("/health", health), *routes, *webhook_routes],
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
