"""WebSocket mode as the tests use it: the SDK's `client.responses.connect()`, and a raw
client (the `websockets` package the SDK itself uses) where the wire matters."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any, Protocol

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from app.statuses import TERMINAL_EVENT_TYPES

TURN_BOUND_S = 30.0


class Receiver(Protocol):
    """The SDK's connection (`recv_bytes`), or a raw one (see `RawSocket`)."""

    def recv_bytes(self) -> bytes: ...

    def close(self) -> None: ...


def ends_turn(message: dict[str, Any]) -> bool:
    """A turn's last message: its terminal event, or the error that refused it (which has a
    `status`; an `error` event of a running response has a `sequence_number`)."""
    return message["type"] in TERMINAL_EVENT_TYPES or (
        message["type"] == "error" and "status" in message
    )


def read_turn(socket: Receiver, *, within_s: float = TURN_BOUND_S) -> list[dict[str, Any]]:
    """The messages of one turn as sent, up to the one that ends it. A socket that stays
    silent is closed after `within_s`, which fails the read instead of hanging the test."""
    watchdog = threading.Timer(within_s, socket.close)
    watchdog.start()
    try:
        messages = []
        while True:
            messages.append(json.loads(socket.recv_bytes()))
            if ends_turn(messages[-1]):
                return messages
    finally:
        watchdog.cancel()


class RawSocket:
    """A plain WebSocket client on /v1/responses, sending and reading JSON."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection

    def send(self, message: dict[str, Any] | str | bytes) -> None:
        self.connection.send(message if isinstance(message, str | bytes) else json.dumps(message))

    def recv_bytes(self) -> bytes:
        received = self.connection.recv(timeout=TURN_BOUND_S)
        return received.encode() if isinstance(received, str) else received

    def close(self) -> None:
        self.connection.close()

    def until_closed(self) -> list[dict[str, Any]]:
        """The messages the server sends until it closes the connection."""
        messages = []
        with contextlib.suppress(ConnectionClosed):
            while True:
                messages.append(json.loads(self.recv_bytes()))
        return messages

    def wait_closed(self) -> int | None:
        """The close code the server sent, once it has closed the connection (after any
        messages it still had to send)."""
        self.until_closed()
        return self.connection.close_code


@contextlib.contextmanager
def raw_socket(base_url: str, api_key: str | None = None) -> Iterator[RawSocket]:
    url = base_url.replace("http://", "ws://", 1) + "/v1/responses"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with connect(url, additional_headers=headers, open_timeout=TURN_BOUND_S) as connection:
        yield RawSocket(connection)


def create(**body: Any) -> dict[str, Any]:
    """A `response.create` message."""
    return {"type": "response.create", "model": "demo", **body}
