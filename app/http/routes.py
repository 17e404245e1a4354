"""The /v1/responses endpoints."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from app import metrics
from app.config import Settings
from app.engine.api_side import ApiSide
from app.engine.errors import ConversationLocked, RequestError
from app.engine.events import DiscardSink, StreamSink, error_event
from app.engine.include import check_include
from app.engine.loop import HAND_BACK
from app.engine.replay import replay_events
from app.engine.request import parse_create_request
from app.engine.submission import Idempotency, KeyTaken, Submission
from app.http.auth import authenticate
from app.http.body import read_json
from app.http.errors import GatewayTimeout
from app.http.query import query_bool, query_choice, query_int, query_list
from app.http.sse import DONE, KEEPALIVE, SSE_HEADERS, frame
from app.logs import current_response_id
from app.shapes import Event
from app.statuses import TERMINAL_EVENT_TYPES
from app.store.rows import StoredResponse

log = logging.getLogger(__name__)

# As long as any client's keys need to be (a UUID is 36); longer ones are refused, not stored.
MAX_IDEMPOTENCY_KEY_CHARS = 255


def _service(request: Request) -> ApiSide:
    service: ApiSide = request.app.state.service
    return service


async def _owner(request: Request) -> str:
    return (await authenticate(request)).owner


async def create_response(request: Request) -> Response:
    caller = await authenticate(request)
    owner = caller.owner
    settings = request.app.state.settings
    body = await read_json(request, settings.max_body_bytes)
    create, items = parse_create_request(body)
    if create.background and not create.store:
        raise RequestError(
            "Background responses must be stored: 'background': true needs 'store': true.",
            param="background",
            code="invalid_value",
        )
    service = _service(request)
    idempotency = Idempotency.of(_idempotency_key(request), body)
    earlier = await service.find_by_idempotency(owner, idempotency)
    if earlier is None:
        try:
            submission = Submission(
                owner, create, items, idempotency, max_running=caller.max_running
            )
            return await _create(request, service, submission)
        except (KeyTaken, ConversationLocked):
            # A concurrent twin claimed the key first (on a conversation, it runs there now):
            # answer with its response.
            earlier = await service.find_by_idempotency(owner, idempotency)
            if earlier is None:
                raise
    log.info("idempotent retry", extra={"response_id": earlier.id})
    return await _answer_with(service, earlier, stream=create.stream, settings=settings)


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
        raise RequestError(
            f"Invalid 'Idempotency-Key': at most {MAX_IDEMPOTENCY_KEY_CHARS} characters, "
            f"got {len(key)}.",
            param="Idempotency-Key",
            code="invalid_value",
        )
    return key


async def _create(request: Request, service: ApiSide, submission: Submission) -> Response:
    settings: Settings = request.app.state.settings
    create = submission.request
    if submission.deferred:
        stored = await service.create_deferred(submission)
        metrics.response_created(stored)
        if stored.background and not create.stream:
            return JSONResponse(service.present_accepted(stored))
        return await _answer_with(service, stored, stream=create.stream, settings=settings)
    if create.stream:
        # The run starts now, not when the first byte is pulled (its first upstream request
        # is on its way already: see `start_inline_stream`): the slot it holds is given back
        # by the run, however early the client goes.
        sink = StreamSink()
        stored, task = await service.start_inline_stream(submission, sink)
        _accepted(request, stored, task)
        task.add_done_callback(lambda _: sink.close())
        return _sse(_stream_inline(service, stored, task, sink))
    stored = await service.create_inline(submission)
    _accepted(request, stored, None)
    final = await service.run_inline(stored, DiscardSink())
    return JSONResponse(await service.answer_blocking(final))


async def _answer_with(
    service: ApiSide, stored: StoredResponse, *, stream: bool, settings: Settings
) -> Response:
    """Answer with a response running elsewhere (a worker, or the first of two twins).

    A background response answers at once (its log, or its current state); any other is
    waited for — respond-first with keep-alives when streaming — and then told whole. One
    created with `store: false` cannot be told again: its content goes when it ends, so
    its end is waited for and then told as an error (`ApiSide.not_kept`).
    """
    if not stored.is_kept:
        final = await _held(service, stored, settings)
        raise service.not_kept(final)
    if stored.background:
        if stream and stored.stream:
            return _sse(_tail_frames(service, stored, after=-1))
        return JSONResponse(await service.present(stored))
    if stream:
        return _sse(_held_frames(service, stored, settings))
    return JSONResponse(await service.answer_blocking(await _held(service, stored, settings)))


async def _held(service: ApiSide, stored: StoredResponse, settings: Settings) -> StoredResponse:
    """The response once it has ended; a 504 past FLEX_TIMEOUT_S (the work goes on)."""
    final = await service.wait_until_terminal(stored, settings.flex_timeout_s)
    if final is None:
        later = ": retrieve it later with GET /v1/responses/{id}" if stored.is_kept else ""
        raise GatewayTimeout(
            f"Response {stored.id} did not finish within {settings.flex_timeout_s:g}s;"
            f" it keeps running{later}.",
            code="timeout",
        )
    return final


def _sse(frames: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(frames, media_type="text/event-stream", headers=SSE_HEADERS)


def _tail_frames(service: ApiSide, stored: StoredResponse, *, after: int) -> AsyncIterator[bytes]:
    """The persisted log as SSE; leaving does not stop the work, which runs in a worker.

    `service.tail` is called here, before the first byte, so a response without a log
    is still refused with a 400.
    """
    events = service.tail(stored, after)

    async def frames() -> AsyncIterator[bytes]:
        with metrics.BACKGROUND_TAILS.track_inprogress():
            async for batch in events:
                if batch is None:
                    yield KEEPALIVE
                    continue
                ended = batch[-1]["type"] in TERMINAL_EVENT_TYPES
                # One write a batch, not one an event: a fast stream is thousands of them.
                yield b"".join(frame(event) for event in batch) + (DONE if ended else b"")

    return frames()


async def _held_frames(
    service: ApiSide, stored: StoredResponse, settings: Settings
) -> AsyncIterator[bytes]:
    """Respond first, then hold the stream with keep-alives until the response ends, and
    replay it as events. Past FLEX_TIMEOUT_S the stream ends with an `error` event."""
    yield KEEPALIVE
    deadline = time.monotonic() + settings.flex_timeout_s
    while True:
        wait_s = min(settings.sse_keepalive_s, max(deadline - time.monotonic(), 0))
        final = await service.wait_until_terminal(stored, wait_s)
        if final is not None:
            break
        if service.stopping.is_set():
            yield _goodbye(stored, 0)
            return
        if time.monotonic() >= deadline:
            message = (
                f"Response {stored.id} did not finish within {settings.flex_timeout_s:g}s;"
                " it keeps running: retrieve it later."
            )
            yield frame(error_event(0, "timeout", message)) + DONE
            return
        yield KEEPALIVE
    replayed = replay_events(await service.present(final))
    yield b"".join(frame(event) for event in replayed) + DONE


def _accepted(
    request: Request, stored: StoredResponse, task: asyncio.Task[StoredResponse] | None
) -> None:
    """Count and log an accepted inline create; its run's task, if it has one, is waited for
    when the server stops."""
    metrics.response_created(stored)
    current_response_id.set(stored.id)
    log.info("response accepted", extra={"mode": "stream" if stored.stream else "blocking"})
    if task is not None:
        inline_tasks: set[asyncio.Task[StoredResponse]] = request.app.state.inline_tasks
        inline_tasks.add(task)
        task.add_done_callback(inline_tasks.discard)


async def _stream_inline(
    service: ApiSide, stored: StoredResponse, task: asyncio.Task[StoredResponse], sink: StreamSink
) -> AsyncIterator[bytes]:
    """Write the events of the run in `task` as SSE frames, always ending with a last one.

    The loop runs in its own task so that its end-of-run writes do not depend on this
    generator: when the client goes away, the generator is cancelled, it cancels the loop,
    and the loop records the response as `cancelled` before stopping. A run that stops
    without a terminal event (it could not reach the database to record one) is followed by
    an `error` event saying where the response goes on: its lease lapses, a worker takes it.
    """
    keepalive_s = service.settings.sse_keepalive_s
    next_number = 0
    ended = handed_back = False
    # One waiter per stream (not per event) wakes the writer when the server starts to stop.
    stop_waiter = asyncio.ensure_future(service.stopping.wait())
    stop_waiter.add_done_callback(lambda _: sink.wake())
    metrics.INLINE_STREAMS.inc()
    try:
        while True:
            events = await sink.take(keepalive_s)
            if service.stopping.is_set():
                # The server is going down: the run is left to a worker (its lease will
                # lapse), and the client is told where to find the result.
                task.cancel(HAND_BACK)
                handed_back = True
                yield _goodbye(stored, next_number)
                return
            if events:
                next_number = events[-1]["sequence_number"] + 1
                ended = events[-1]["type"] in TERMINAL_EVENT_TYPES
                yield b"".join(frame(event) for event in events) + (DONE if ended else b"")
            elif sink.closed:
                break
            else:
                yield KEEPALIVE
        if not ended:
            yield _goodbye(stored, next_number, code="server_error")
    finally:
        metrics.INLINE_STREAMS.dec()
        stop_waiter.cancel()
        # Cancelled once only: a second cancel would lose the hand-back's message.
        if not task.done() and not handed_back:
            log.info(
                "client disconnected; cancelling the response", extra={"response_id": stored.id}
            )
            task.cancel()


def goodbye_event(stored: StoredResponse, sequence_number: int, code: str) -> Event:
    """The last event of a stream this process cannot carry on: it is shutting down, or the
    run stopped without recording an ending here."""
    cause = "is shutting down" if code == "server_shutdown" else "could not finish it"
    message = (
        f"The server {cause}; the response goes on elsewhere: retrieve it with "
        f"GET /v1/responses/{stored.id}."
    )
    return error_event(sequence_number, code, message)


def _goodbye(stored: StoredResponse, sequence_number: int, code: str = "server_shutdown") -> bytes:
    return frame(goodbye_event(stored, sequence_number, code)) + DONE


async def get_response(request: Request) -> Response:
    owner = await _owner(request)
    service = _service(request)
    # Checked as on create; what a response shows was settled by its create's `include`.
    check_include(query_list(request, "include"))
    stored = await service.get(owner, request.path_params["response_id"])
    if query_bool(request, "stream", default=False):
        after = query_int(request, "starting_after", default=-1, low=-1)
        return _sse(_tail_frames(service, stored, after=after))
    return JSONResponse(await service.present(stored))


async def cancel_response(request: Request) -> Response:
    owner = await _owner(request)
    cancelled = await _service(request).cancel(owner, request.path_params["response_id"])
    return JSONResponse(cancelled)


async def delete_response(request: Request) -> Response:
    owner = await _owner(request)
    response_id = request.path_params["response_id"]
    await _service(request).delete(owner, response_id)
    return JSONResponse({"id": response_id, "object": "response", "deleted": True})


async def list_input_items(request: Request) -> Response:
    owner = await _owner(request)
    check_include(query_list(request, "include"))
    page = await _service(request).input_items(
        owner,
        request.path_params["response_id"],
        limit=query_int(request, "limit", default=20, low=1, high=100),
        order=query_choice(request, "order", ("asc", "desc"), default="desc"),
        after=request.query_params.get("after"),
    )
    return JSONResponse(page)


routes = [
    Route("/v1/responses", create_response, methods=["POST"]),
    Route("/v1/responses/{response_id}", get_response, methods=["GET"]),
    Route("/v1/responses/{response_id}", delete_response, methods=["DELETE"]),
    Route("/v1/responses/{response_id}/cancel", cancel_response, methods=["POST"]),
    Route("/v1/responses/{response_id}/input_items", list_input_items, methods=["GET"]),
]
