"""The /v1/responses endpoints."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from app.engine.errors import RequestError
from app.engine.request import parse_create_request
from app.engine.service import ResponsesService
from app.engine.sinks import DiscardSink, QueueSink
from app.http.auth import authenticate
from app.http.body import read_json
from app.http.sse import KEEPALIVE, SSE_HEADERS, frame
from app.logs import current_response_id
from app.store.responses import StoredResponse

log = logging.getLogger(__name__)


def _service(request: Request) -> ResponsesService:
    return request.app.state.service


def _owner(request: Request) -> str:
    return authenticate(request, request.app.state.settings.api_key_set)


async def create_response(request: Request) -> Response:
    owner = _owner(request)
    settings = request.app.state.settings
    body = await read_json(request, settings.max_body_bytes)
    create, items = parse_create_request(body)
    if create.background or create.service_tier == "flex":
        raise RequestError(
            "Background and flex responses are not available on this server yet.",
            param="background" if create.background else "service_tier",
            code="unsupported_value",
        )
    service = _service(request)
    stored = await service.create_inline(owner, create, items)
    current_response_id.set(stored.id)
    log.info("response accepted", extra={"mode": "stream" if create.stream else "blocking"})
    if create.stream:
        return StreamingResponse(
            _stream_inline(request, service, stored),
            media_type="text/event-stream",
            headers=SSE_HEADERS,
        )
    final = await service.run(stored, DiscardSink())
    return JSONResponse(await service.present(final))


async def _stream_inline(
    request: Request, service: ResponsesService, stored: StoredResponse
) -> AsyncIterator[bytes]:
    """Run the loop in its own task and write its events as SSE frames.

    The loop runs in a separate task so that its end-of-run writes do not depend on this
    generator: when the client goes away, the generator is cancelled, it cancels the loop,
    and the loop records the response as `cancelled` before stopping.
    """
    sink = QueueSink()
    task = asyncio.create_task(service.run(stored, sink), name=f"inline {stored.id}")
    inline_tasks: set[asyncio.Task[StoredResponse]] = request.app.state.inline_tasks
    inline_tasks.add(task)
    task.add_done_callback(inline_tasks.discard)
    task.add_done_callback(lambda _: sink.close())
    keepalive_s = request.app.state.settings.sse_keepalive_s
    try:
        while True:
            try:
                event = await asyncio.wait_for(sink.queue.get(), keepalive_s)
            except TimeoutError:
                yield KEEPALIVE
                continue
            if event is None:
                break
            yield frame(event)
    finally:
        if not task.done():
            log.info(
                "client disconnected; cancelling the response", extra={"response_id": stored.id}
            )
            task.cancel()


async def get_response(request: Request) -> Response:
    owner = _owner(request)
    service = _service(request)
    stored = await service.get(owner, request.path_params["response_id"])
    return JSONResponse(await service.present(stored))


routes = [
    Route("/v1/responses", create_response, methods=["POST"]),
    Route("/v1/responses/{response_id}", get_response, methods=["GET"]),
]
