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
from starlette.routing import WebSocketRoute
from starlette.types import ASGIApp

from app import scrape
from app.config import Settings
from app.engine.api_side import ApiSide
from app.engine.console import open_console
from app.engine.errors import RequestError
from app.engine.key_book import KeyBook
from app.engine.runtime import Role, open_runtime
from app.engine.webhook_endpoints import WebhookEndpoints
from app.http import context, errors
from app.http.console.routes import console_routes
from app.http.conversations import routes as conversation_routes
from app.http.ops import ops_routes
from app.http.request_ids import RequestIdMiddleware
from app.http.routes import routes
from app.http.webhook_routes import webhook_routes
from app.http.websocket import GOODBYE_TIMEOUT_S, OpenSockets, responses_socket
from app.setting_checks import Networks

log = logging.getLogger(__name__)


class FerryServer(uvicorn.Server):
    """uvicorn, telling the app's open streams to wind up as soon as shutdown begins.

    Otherwise a stream is simply cut when the graceful-shutdown bound runs out; this way
    each one ends with a last event saying where the response goes on.
    """

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        state = getattr(self.config.app, "state", None)
        service = getattr(state, "service", None)
        if isinstance(service, ApiSide):
            service.stopping.set()
        # uvicorn closes open WebSockets at once: first let each hand back its turn and say so.
        open_sockets = getattr(state, "sockets", None)
        if isinstance(open_sockets, OpenSockets):
            await open_sockets.wound_up(GOODBYE_TIMEOUT_S)
        await super().shutdown(sockets=sockets)


class FerryApp(Starlette):
    """Starlette, with request ids given outside everything else — starlette's own error
    middleware included — so that a 500 carries its id too."""

    trusted_proxies: Networks = ()

    def build_middleware_stack(self) -> ASGIApp:
        return RequestIdMiddleware(super().build_middleware_stack(), self.trusted_proxies)


def build_app(settings: Settings) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_runtime(settings, role=Role.API) as runtime:
            app.state.settings = settings
            app.state.service = ApiSide(runtime)
            app.state.webhook_endpoints = WebhookEndpoints(runtime.webhooks, runtime.webhook_sender)
            app.state.inline_tasks = set()
            app.state.sockets = OpenSockets()
            keys = app.state.keys = KeyBook(runtime.api_keys)
            app.state.console = open_console(runtime)
            runtime.notifier.follow_keys(keys)
            app.state.scrape_registry = scrape.scrape_registry(
                runtime.pool, asyncio.get_running_loop(), settings.db_probe_timeout_s
            )
            await _say_who_may_call(settings, keys)
            log.info("api ready", extra={"upstream": settings.upstream_base_url})
            try:
                yield
            finally:
                await _drain(app.state.inline_tasks, settings.shutdown_timeout_s)
                await keys.close()
                scrape.process_exiting()

    app = FerryApp(
        routes=[
            *ops_routes,
            *context.routes,
            *routes,
            *conversation_routes,
            *webhook_routes,
            *console_routes(),
            WebSocketRoute("/v1/responses", responses_socket),
        ],
        lifespan=lifespan,
        exception_handlers={
            RequestError: errors.on_request_error,
            psycopg.OperationalError: errors.on_database_unavailable,
            PoolTimeout: errors.on_database_unavailable,
            HTTPException: errors.on_http_exception,
            Exception: errors.on_unexpected,
        },
    )
    app.trusted_proxies = settings.trusted_proxy_networks
    return app


async def _say_who_may_call(settings: Settings, keys: KeyBook) -> None:
    try:
        kept = await keys.any_keys()
    except psycopg.Error:
        # Not migrated yet (`serve --no-migrate` before `migrate`), or no database: each
        # request asks again.
        log.warning("could not read the API keys table", exc_info=True)
        return
    if settings.api_key_set or kept:
        log.info(
            "API keys required",
            extra={"keys": len(settings.api_key_set), "database_keys": kept},
        )
    else:
        log.warning(
            "API_KEYS is unset and no key was made with `ferry keys create`: the API is open "
            "to anyone who can reach it"
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
