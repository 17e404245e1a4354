"""Request ids: made for each request, or taken from a trusted proxy's X-Request-Id; sent
back in the response headers, and on every log line written while the request is served."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Iterator

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from app.http import errors
from app.http.request_ids import RequestIdMiddleware, is_trusted
from app.http.server import FerryApp
from app.logs import JsonFormatter
from app.setting_checks import Networks, networks

log = logging.getLogger("ferry.test.request_ids")
GENERATED = re.compile(r"req_[0-9a-f]{32}")


class Lines(logging.Handler):
    """The log lines written, as the API writes them (JSON)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.entries: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.entries.append(json.loads(self.format(record)))


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        log.removeHandler(handler)


async def hello(request: Request) -> Response:
    log.info("handling")
    await asyncio.create_task(_in_a_task_of_its_own())
    return JSONResponse({"ok": True})


async def _in_a_task_of_its_own() -> None:
    log.info("working")


async def boom(request: Request) -> Response:
    raise RuntimeError("unexpected")


def app(trusted: Networks) -> FerryApp:
    ferry = FerryApp(
        routes=[Route("/hello", hello), Route("/boom", boom)],
        exception_handlers={Exception: errors.on_unexpected},
    )
    ferry.trusted_proxies = trusted
    return ferry


def client(trusted: Networks, address: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(
        app=app(trusted), client=(address, 40000), raise_app_exceptions=False
    )
    return httpx.AsyncClient(transport=transport, base_url="http://ferry")


async def test_each_request_gets_an_id_on_its_reply_and_on_each_of_its_log_lines(
    lines: Lines,
) -> None:
    async with client(trusted=()) as http:
        first = await http.get("/hello")
        second = await http.get("/hello")
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert all(GENERATED.fullmatch(request_id) for request_id in ids)
    assert ids[0] != ids[1]
    assert [(entry["msg"], entry["request_id"]) for entry in lines.entries] == [
        ("handling", ids[0]),
        ("working", ids[0]),  # a task the request started carries it too
        ("handling", ids[1]),
        ("working", ids[1]),
    ]


async def test_a_stream_carries_its_id_and_is_not_buffered(lines: Lines) -> None:
    """Driven as ASGI (httpx's ASGI transport would gather the body): the first chunk must
    reach the server before the app writes the second."""
    first_sent = asyncio.Event()
    sent: list[Message] = []

    async def streaming_app(scope: Scope, receive: Receive, send: Send) -> None:
        log.info("streaming")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"1", "more_body": True})
        await first_sent.wait()
        await send({"type": "http.response.body", "body": b"2"})

    async def server_send(message: Message) -> None:
        sent.append(message)
        if message.get("body") == b"1":
            first_sent.set()

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    scope: Scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    middleware = RequestIdMiddleware(streaming_app, trusted=())
    await asyncio.wait_for(middleware(scope, receive, server_send), timeout=5)
    request_id = dict(sent[0]["headers"])[b"x-request-id"].decode()
    assert GENERATED.fullmatch(request_id)
    assert [message.get("body") for message in sent[1:]] == [b"1", b"2"]
    assert [entry["request_id"] for entry in lines.entries] == [request_id]


async def test_an_unexpected_error_still_carries_its_id() -> None:
    async with client(trusted=()) as http:
        reply = await http.get("/boom")
    assert reply.status_code == 500
    assert GENERATED.fullmatch(reply.headers["x-request-id"])


@pytest.mark.parametrize(
    ("trusted", "address", "kept"),
    [
        ("127.0.0.1", "127.0.0.1", True),
        ("10.0.0.0/8", "10.1.2.3", True),
        ("*", "203.0.113.9", True),
        ("", "127.0.0.1", False),  # the default: trust nobody
        ("10.0.0.0/8", "127.0.0.1", False),
    ],
)
async def test_a_sent_id_is_kept_only_from_a_trusted_proxy(
    trusted: str, address: str, kept: bool
) -> None:
    sent = "edge-4f1c2a:7"
    allowed = None if trusted == "*" else networks([trusted] if trusted else [])
    async with client(allowed, address) as http:
        reply = await http.get("/hello", headers={"X-Request-Id": sent})
    assert (reply.headers["x-request-id"] == sent) is kept
    if not kept:
        assert GENERATED.fullmatch(reply.headers["x-request-id"])


@pytest.mark.parametrize(
    "sent", ["", "-starts-with-a-dash", "has space", "x" * 129, "café".encode()]
)
async def test_a_sent_id_that_does_not_look_like_one_is_replaced(sent: str | bytes) -> None:
    async with client(trusted=None) as http:
        reply = await http.get("/hello", headers={"X-Request-Id": sent})
    assert GENERATED.fullmatch(reply.headers["x-request-id"])


def test_an_address_that_is_not_ip_is_never_trusted() -> None:
    assert not is_trusted("unix-socket", networks(["0.0.0.0/0"]))
    assert not is_trusted(None, networks(["0.0.0.0/0"]))
