"""WebSocket mode on /v1/responses: the loop's fourth driver, beside inline blocking, inline
SSE and the worker.

The handshake is authenticated as any request: a missing or wrong key, or a key over its
request rate, is refused with the HTTP error instead of the upgrade. Then the connection
takes `response.create` messages (`app.http.socket_messages`), one turn at a time, in the
order they came; each is authenticated again (a key revoked meanwhile is refused and the
socket closed), accepted and run as a streaming create (`app.engine.socket_session`), and
its events are written to the socket as they come, each a text message.

As with inline SSE, the run has its own task and the writer only forwards its events: a
client that goes away cancels the run, which records the response `cancelled`; a process
shutting down hands the run to a worker (its lease lapses) and tells the client so with a
last `error` event. A connection lasts at most WEBSOCKET_CONNECTION_LIMIT_S: then, once no
turn runs, it gets an error `websocket_connection_limit_reached` and is closed (1001).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketDisconnected

from app.config import Settings
from app.engine.api_side import ApiSide
from app.engine.errors import RequestError
from app.engine.events import StreamSink
from app.engine.loop import HAND_BACK
from app.engine.request import parse_create_request
from app.engine.socket_session import SocketSession, Turn
from app.http.auth import authenticate
from app.http.errors import Unauthorized
from app.http.routes import goodbye_event
from app.http.socket_messages import (
    error_envelope,
    event_message,
    parse_create_message,
    refusal_envelope,
)
from app.logs import current_response_id
from app.shapes import JsonObject
from app.statuses import TERMINAL_EVENT_TYPES
from app.store.db import DATABASE_OUTAGES
from app.store.rows import StoredResponse

log = logging.getLogger(__name__)

#: `response.create` messages a connection holds while a turn runs; past them it reads no
#: more until one is taken (the client's writes wait), so a flood costs bounded memory.
MAX_QUEUED_TURNS = 16
#: Longest a shutdown waits for open connections to hand back their turns and say goodbye.
GOODBYE_TIMEOUT_S = 2.0
#: How often a turn's writer wakes with nothing to write, to look at the clock.
_IDLE_CHECK_S = 15.0
# RFC 6455 close codes: the SDK reconnects after the first two, not after the third.
GOING_AWAY = 1001
SERVICE_RESTART = 1012
POLICY_VIOLATION = 1008


class _Gone(Exception):
    """The client is gone: nothing more can be written to it."""


class OpenSockets:
    """The process's open WebSocket connections, so a shutdown can let each hand back its
    turn and say goodbye before the server closes the sockets under them."""

    def __init__(self) -> None:
        self._closed: set[asyncio.Event] = set()

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        closed = asyncio.Event()
        self._closed.add(closed)
        try:
            yield
        finally:
            closed.set()
            self._closed.discard(closed)

    async def wound_up(self, timeout_s: float) -> None:
        """Wait, at most `timeout_s`, until every open connection has closed."""
        waits = [asyncio.ensure_future(closed.wait()) for closed in self._closed]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=timeout_s)
            for wait in pending:
                wait.cancel()


async def responses_socket(websocket: WebSocket) -> None:
    """WebSocket /v1/responses. A refused handshake raises: the app's error handlers answer
    it with the HTTP error envelope (the WebSocket denial response)."""
    await authenticate(websocket)
    await websocket.accept()
    sockets: OpenSockets = websocket.app.state.sockets
    with sockets.track():
        await _Connection(websocket).serve()


class _Connection:
    def __init__(self, websocket: WebSocket) -> None:
        app = websocket.app
        self.websocket = websocket
        self.service: ApiSide = app.state.service
        self.settings: Settings = app.state.settings
        self.inline_tasks: set[asyncio.Task[Any]] = app.state.inline_tasks
        self.session = SocketSession(self.service)
        self.inbox: asyncio.Queue[Message] = asyncio.Queue(MAX_QUEUED_TURNS)
        self.gone = asyncio.Event()  # the client closed the connection, or it dropped
        loop = asyncio.get_running_loop()
        self.deadline = loop.time() + self.settings.websocket_connection_limit_s

    async def serve(self) -> None:
        reader = asyncio.create_task(self._read(), name="websocket reader")
        try:
            while (message := await self._next_message()) is not None:
                if not await self._turn(message):
                    break
        except _Gone:
            pass
        finally:
            reader.cancel()

    async def _read(self) -> None:
        """Take the client's messages as they come, so that a client gone mid-turn is seen
        at once; hold the turns it sends meanwhile."""
        try:
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                await self.inbox.put(message)
        finally:
            self.gone.set()

    # --- between turns -----------------------------------------------------------------

    async def _next_message(self) -> Message | None:
        """The next `response.create` to run; None when the connection ends first: the
        client left, the server is stopping, or the connection's time is up (a message
        taken meanwhile goes unanswered, as the connection closes)."""
        loop = asyncio.get_running_loop()
        message = None if self.inbox.empty() else self.inbox.get_nowait()
        if message is None and not self.gone.is_set():
            taken = asyncio.ensure_future(self.inbox.get())
            ends = [asyncio.ensure_future(e.wait()) for e in (self.gone, self.service.stopping)]
            try:
                timeout = max(self.deadline - loop.time(), 0)
                await asyncio.wait(
                    [taken, *ends], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for waiter in ends:
                    waiter.cancel()
                if not taken.done():
                    taken.cancel()
            message = taken.result() if taken.done() and not taken.cancelled() else None
        if self.gone.is_set():
            return None
        if self.service.stopping.is_set():
            await self._close(SERVICE_RESTART)
            return None
        if loop.time() >= self.deadline:
            await self._say_time_is_up()
            return None
        return message

    async def _say_time_is_up(self) -> None:
        limit_s = self.settings.websocket_connection_limit_s
        envelope = error_envelope(
            400,
            f"The WebSocket connection reached its time limit of {limit_s:g}s; open a new "
            "connection to continue (a stored response can be continued from it with "
            "previous_response_id).",
            code="websocket_connection_limit_reached",
        )
        with contextlib.suppress(_Gone):
            await self._send(envelope)
        await self._close(GOING_AWAY)

    # --- one turn ------------------------------------------------------------------------

    async def _turn(self, message: Message) -> bool:
        """Accept and run one `response.create`; False when the connection must close."""
        lane, previous_id = None, None
        try:
            body, lane = parse_create_message(
                message.get("text") or message.get("bytes") or "", self.settings.max_body_bytes
            )
            if isinstance(body.get("previous_response_id"), str):
                previous_id = body["previous_response_id"]
            caller = await authenticate(self.websocket)
            request, items = parse_create_request(body)
            turn = Turn(caller.owner, request, items, lane=lane, max_running=caller.max_running)
            stored = await self.session.accept(turn)
        except RequestError as exc:
            await self._refuse(refusal_envelope(exc, lane), lane, previous_id)
            if isinstance(exc, Unauthorized):  # the key was revoked or has expired
                await self._close(POLICY_VIOLATION)
                return False
            return True
        except DATABASE_OUTAGES:
            log.warning("database unavailable")
            envelope = error_envelope(
                503,
                "The database is unavailable; retry shortly.",
                code="database_unavailable",
                headers={"retry-after": "2"},
                lane=lane,
            )
            await self._refuse(envelope, lane, previous_id)
            return True
        except Exception:
            log.exception("unhandled error")
            envelope = error_envelope(
                500, "The server had an error while processing your request.", code=None
            )
            await self._refuse(envelope, lane, previous_id)
            return True
        token = current_response_id.set(stored.id)
        try:
            log.info("response accepted", extra={"mode": "websocket"})
            return await self._relay(turn, stored)
        finally:
            current_response_id.reset(token)

    async def _refuse(self, envelope: JsonObject, lane: str | None, previous: str | None) -> None:
        """Tell the client its turn was refused; a continuation refused makes the lane
        forget what it continued (the specification's eviction)."""
        self.session.memory.forget(lane, previous)
        await self._send(envelope)

    async def _relay(self, turn: Turn, stored: StoredResponse) -> bool:
        """Write the events of the turn's run as they come, always ending with a last one;
        False when the connection must close."""
        sink = StreamSink()
        run = asyncio.create_task(self.session.run(turn, stored, sink), name=f"inline {stored.id}")
        self.inline_tasks.add(run)
        run.add_done_callback(self.inline_tasks.discard)
        run.add_done_callback(lambda _: sink.close())
        # Either wakes the writer: it has more to look at than the sink.
        ends = [asyncio.ensure_future(e.wait()) for e in (self.gone, self.service.stopping)]
        for waiter in ends:
            waiter.add_done_callback(lambda _: sink.wake())
        next_number, ended, handed_back = 0, False, False
        try:
            while True:
                events = await sink.take(_IDLE_CHECK_S)
                if self.service.stopping.is_set():
                    # Left to a worker through the lapsing lease; the client is told where.
                    run.cancel(HAND_BACK)
                    handed_back = True
                    goodbye = goodbye_event(stored, next_number, "server_shutdown")
                    with contextlib.suppress(_Gone):
                        await self._send_event(goodbye, turn)
                    await self._close(SERVICE_RESTART)
                    return False
                if self.gone.is_set():
                    return False  # the run is cancelled below, and records it
                for event in events:
                    await self._send_event(event, turn)
                if events:
                    next_number = events[-1]["sequence_number"] + 1
                    ended = events[-1]["type"] in TERMINAL_EVENT_TYPES
                elif sink.closed:
                    break
            if not ended:
                await self._send_event(goodbye_event(stored, next_number, "server_error"), turn)
            return True
        finally:
            for waiter in ends:
                waiter.cancel()
            if not run.done() and not handed_back:
                # Cancelled once only: a second cancel would lose the hand-back's message.
                log.info("client disconnected; cancelling the response")
                run.cancel()
            elif not run.cancelled() and run.exception() is not None:
                log.warning("the run stopped", exc_info=run.exception())

    # --- writing ---------------------------------------------------------------------------

    async def _send_event(self, event: JsonObject, turn: Turn) -> None:
        await self._send_text(event_message(event, turn.lane))

    async def _send(self, envelope: JsonObject) -> None:
        await self._send_text(event_message(envelope, None))

    async def _send_text(self, text: str) -> None:
        try:
            await self.websocket.send_text(text)
        except (WebSocketDisconnect, WebSocketDisconnected, OSError):
            self.gone.set()
            raise _Gone from None

    async def _close(self, code: int) -> None:
        with contextlib.suppress(WebSocketDisconnect, WebSocketDisconnected, OSError):
            await self.websocket.close(code)
