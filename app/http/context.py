"""The endpoints about a request's context rather than a response: compacting a
conversation, and counting the tokens of an input. Neither stores anything."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.config import Settings
from app.engine.api_side import ApiSide
from app.engine.compaction import Compactor, parse_compact_request
from app.engine.input_tokens import InputTokenCounter, parse_input_tokens_request
from app.engine.runtime import Runtime
from app.http.auth import authenticate
from app.http.body import read_json


def _runtime(request: Request) -> Runtime:
    service: ApiSide = request.app.state.service
    return service.runtime


async def _caller_and_body(request: Request) -> tuple[str, Any]:
    """Who asks (or a 401), and the JSON body (or a 400/413)."""
    owner = (await authenticate(request)).owner
    settings: Settings = request.app.state.settings
    return owner, await read_json(request, settings.max_body_bytes)


async def compact(request: Request) -> Response:
    owner, body = await _caller_and_body(request)
    compact_request, items = parse_compact_request(body)
    settings: Settings = request.app.state.settings
    runtime = _runtime(request)
    compactor = Compactor(
        runtime.store,
        runtime.upstream,
        runtime.sealing_keys,
        runtime.context_window,
        settings,
        files=request.app.state.service.files,
    )
    return JSONResponse(await compactor.compact(owner, compact_request, items))


async def count_input_tokens(request: Request) -> Response:
    owner, body = await _caller_and_body(request)
    count_request, items = parse_input_tokens_request(body)
    settings: Settings = request.app.state.settings
    runtime = _runtime(request)
    counter = InputTokenCounter(
        runtime.store,
        runtime.sealing_keys,
        runtime.context_window,
        runtime.tools,
        settings.mcp_allowed_prefixes,
        files=request.app.state.service.files,
    )
    return JSONResponse(await counter.count(owner, count_request, items))


routes = [
    Route("/v1/responses/compact", compact, methods=["POST"]),
    Route("/v1/responses/input_tokens", count_input_tokens, methods=["POST"]),
]
