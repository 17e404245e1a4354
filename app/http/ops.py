"""The endpoints for operators rather than clients: liveness, readiness, metrics and the
OpenAPI document.

None of them asks for an API key: they reveal no response, no key and no request content
(metrics labels are bounded, see `app.metrics`).
"""

from __future__ import annotations

import asyncio

from prometheus_client.exposition import choose_encoder
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.engine.api_side import ApiSide
from app.engine.readiness import NotReady, check_readiness
from app.http.openapi import openapi_document


async def healthz(request: Request) -> JSONResponse:
    """The process is up and answering; the database is not asked."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Ready for traffic: the database answers in time and its migrations are current."""
    service: ApiSide = request.app.state.service
    problem: NotReady | None
    if service.stopping.is_set():
        problem = NotReady("shutting_down", "The server is shutting down.")
    else:
        timeout_s = service.settings.db_probe_timeout_s
        problem = await check_readiness(service.runtime.pool, timeout_s)
    if problem is None:
        return JSONResponse({"status": "ready"})
    body = {"status": "not_ready", "reason": problem.reason, "message": problem.message}
    return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})


async def metrics(request: Request) -> Response:
    """Prometheus exposition, in the format the scraper asks for (Accept)."""
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    # Off the event loop: the live values are read on it while the scraping thread waits.
    body = await asyncio.to_thread(encoder, request.app.state.scrape_registry)
    return Response(body, media_type=content_type)


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(openapi_document())


ops_routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/health", healthz, methods=["GET"]),  # the first name; kept for existing probes
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]
