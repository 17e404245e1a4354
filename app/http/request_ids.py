"""Request ids: every request gets one, returned in the `X-Request-Id` response header (where
the openai SDK reads it, as `response._request_id`) and carried in every log line written
while the request is served, beside its `response_id`.

An `X-Request-Id` sent by a proxy the operator trusts (TRUSTED_PROXIES) is kept, so one id
follows a request through the proxy's logs and Ferry's; from anyone else, or when it does
not look like an id (1-128 characters: letters, digits and `._:/+=-`), a new one is made.

A WebSocket connection gets one too, in its handshake's reply (accepted or refused), and
its log lines carry it for the life of the connection.

Pure ASGI rather than starlette's BaseHTTPMiddleware, which would buffer a stream's body.
"""

from __future__ import annotations

import ipaddress
import re
import secrets

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.logs import current_request_id
from app.setting_checks import Networks

HEADER = "x-request-id"
# Messages that start an HTTP reply: a request's, or a refused WebSocket handshake's.
_HEADED = frozenset({"http.response.start", "websocket.http.response.start"})
_WELL_FORMED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+=-]{0,127}")


def new_request_id() -> str:
    return f"req_{secrets.token_hex(16)}"


def is_trusted(host: str | None, trusted: Networks) -> bool:
    if trusted is None:  # TRUSTED_PROXIES=*
        return True
    if not host or not trusted:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # not an IP address (a Unix socket): nobody vouches for it
        return False
    return any(address in network for network in trusted)


def request_id_of(scope: Scope, trusted: Networks) -> str:
    """The sender's id when a trusted proxy sent a well-formed one; a new one otherwise."""
    sent = Headers(scope=scope).get(HEADER)
    if sent is None or not _WELL_FORMED.fullmatch(sent):
        return new_request_id()
    client = scope.get("client")
    return sent if is_trusted(client[0] if client else None, trusted) else new_request_id()


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp, trusted: Networks) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope, self.trusted)

        async def send_with_id(message: Message) -> None:
            if message["type"] in _HEADED:
                MutableHeaders(scope=message)[HEADER] = request_id
            elif message["type"] == "websocket.accept":
                headers = [*message.get("headers", []), (HEADER.encode(), request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        # Tasks the request starts (an inline run) copy the context, and carry the id too.
        token = current_request_id.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current_request_id.reset(token)
