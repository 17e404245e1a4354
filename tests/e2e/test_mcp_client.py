"""app.engine.tools.mcp_client against a real MCP server (streamable HTTP) on loopback.

`mcp_server` is the suite's (tests/e2e/conftest.py); calls are told apart by their arguments.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from app.engine.tools.mcp_client import McpError, McpTool, call_mcp_tool, list_mcp_tools
from tests.support.mcp_server import (
    PIXEL_PNG_B64,
    TEST_HEADER,
    TOOL_NAMES,
    McpTestServer,
    run_mcp_server,
)
from tests.support.processes import free_port
from tests.support.servers import serve

TIMEOUT_S = 10.0
# Failures that need no waiting (refused connection, HTTP error) must come back well inside
# the timeout: they must not be reported by running out the clock.
FAST_S = 5.0

_T = TypeVar("_T")


def run(coro: Awaitable[_T]) -> _T:
    """Run on a fresh loop, and check the call left no task behind on it."""

    async def main() -> _T:
        result = await coro
        assert asyncio.all_tasks() == {asyncio.current_task()}
        return result

    return asyncio.run(main())


def run_expecting_error(coro: Awaitable[Any]) -> McpError:
    async def main() -> McpError:
        with pytest.raises(McpError) as caught:
            await coro
        assert asyncio.all_tasks() == {asyncio.current_task()}
        return caught.value

    return asyncio.run(main())


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}/mcp"


def call(server: McpTestServer, name: str, arguments: dict[str, Any], **kw: Any) -> Any:
    return run(call_mcp_tool(server.url, kw.get("headers"), name, arguments, timeout_s=TIMEOUT_S))


def test_list_tools(mcp_server: McpTestServer) -> None:
    tools = run(list_mcp_tools(mcp_server.url, None, timeout_s=TIMEOUT_S))

    by_name = {tool.name: tool for tool in tools}
    assert set(by_name) == TOOL_NAMES
    assert len(tools) == len(TOOL_NAMES)
    add = by_name["add"]
    assert isinstance(add, McpTool)
    assert add.description == "Add two integers"
    assert add.input_schema["type"] == "object"
    assert add.input_schema["properties"]["a"]["type"] == "integer"
    assert add.input_schema["properties"]["b"]["type"] == "integer"
    assert sorted(add.input_schema["required"]) == ["a", "b"]
    assert by_name["echo"].input_schema["properties"]["text"]["type"] == "string"
    assert by_name["secret_header"].input_schema["properties"] == {}


def test_list_tools_follows_pagination_cursors() -> None:
    with run_mcp_server(page_size=2) as server:
        tools = run(list_mcp_tools(server.url, None, timeout_s=TIMEOUT_S))

        assert sorted(tool.name for tool in tools) == sorted(TOOL_NAMES)
        # 7 tools, 2 per page: four pages, each asked for once with the previous cursor.
        assert server.cursors() == [None, "2", "4", "6"]


def test_call_add_returns_the_text_result(mcp_server: McpTestServer) -> None:
    a, b = 2, 3_000_000 + uuid.uuid4().int % 1000  # unique, so the recorder match is ours

    assert call(mcp_server, "add", {"a": a, "b": b}) == (str(a + b), None)
    assert len(mcp_server.calls_matching("add", {"a": a, "b": b})) == 1


def test_call_echo(mcp_server: McpTestServer) -> None:
    text = f"héllo\nwörld {uuid.uuid4()}"

    assert call(mcp_server, "echo", {"text": text}) == (text, None)
    assert len(mcp_server.calls_matching("echo", {"text": text})) == 1


def test_tool_error_is_returned_not_raised(mcp_server: McpTestServer) -> None:
    reason = f"the reactor is offline {uuid.uuid4()}"

    output, error = call(mcp_server, "fail", {"reason": reason})

    assert output is None
    assert error is not None
    assert reason in error
    assert len(mcp_server.calls_matching("fail", {"reason": reason})) == 1


def test_unknown_tool_is_a_tool_error(mcp_server: McpTestServer) -> None:
    """This SDK's server answers an unknown tool with an isError result, not a JSON-RPC
    error, so the client returns it as `(None, error)` rather than raising McpError."""
    output, error = call(mcp_server, "no_such_tool", {})

    assert output is None
    assert error is not None
    assert "no_such_tool" in error
    assert mcp_server.calls_matching("no_such_tool", {}) == []


def test_non_text_blocks_are_json(mcp_server: McpTestServer) -> None:
    output, error = call(mcp_server, "mixed", {})

    assert error is None
    assert output is not None
    before, image, after = output.split("\n")
    assert (before, after) == ("before", "after")
    assert json.loads(image) == {"type": "image", "data": PIXEL_PNG_B64, "mimeType": "image/png"}


def test_structured_content_without_text_is_json(mcp_server: McpTestServer) -> None:
    output, error = call(mcp_server, "structured", {})

    assert error is None
    assert output is not None
    assert json.loads(output) == {"answer": 42, "unit": "none"}


def test_headers_are_sent(mcp_server: McpTestServer) -> None:
    secret = f"s3cret-{uuid.uuid4()}"

    assert call(mcp_server, "secret_header", {}, headers={TEST_HEADER: secret}) == (secret, None)


def test_unreachable_server_fails_fast() -> None:
    url = closed_port_url()
    secret = f"s3cret-{uuid.uuid4()}"
    started = time.monotonic()

    error = run_expecting_error(
        list_mcp_tools(url, {"Authorization": f"Bearer {secret}"}, timeout_s=TIMEOUT_S)
    )

    assert time.monotonic() - started < FAST_S
    assert "could not connect" in str(error)
    assert url in str(error)
    assert secret not in str(error)


def test_call_on_unreachable_server_raises() -> None:
    started = time.monotonic()

    error = run_expecting_error(
        call_mcp_tool(closed_port_url(), None, "add", {"a": 1, "b": 2}, timeout_s=TIMEOUT_S)
    )

    assert time.monotonic() - started < FAST_S
    assert "could not connect" in str(error)


def test_url_credentials_stay_out_of_errors() -> None:
    port_url = closed_port_url()
    url = port_url.replace("http://", "http://user:pw-secret@") + "?token=q-secret"

    error = run_expecting_error(list_mcp_tools(url, None, timeout_s=TIMEOUT_S))

    assert port_url in str(error)
    assert "pw-secret" not in str(error)
    assert "q-secret" not in str(error)


def test_not_an_mcp_endpoint(mcp_server: McpTestServer) -> None:
    """A path that 404s: the SDK reports it as JSON-RPC -32601 "Not Found"."""
    not_mcp = mcp_server.url.removesuffix("/mcp") + "/not-mcp"
    started = time.monotonic()

    error = run_expecting_error(list_mcp_tools(not_mcp, None, timeout_s=TIMEOUT_S))

    assert time.monotonic() - started < FAST_S
    assert "HTTP 404" in str(error)
    assert "Not Found" in str(error)


def test_http_error_status(mcp_server: McpTestServer) -> None:
    """The health route only allows GET: the POST gets 405, an HTTP error, not a hang."""
    health = mcp_server.url.removesuffix("/mcp") + "/health"

    error = run_expecting_error(
        call_mcp_tool(health, None, "add", {"a": 1, "b": 2}, timeout_s=TIMEOUT_S)
    )

    assert "/health" in str(error)
    assert "HTTP 405" in str(error)


def test_timeout_bounds_a_slow_tool(mcp_server: McpTestServer) -> None:
    seconds = 3.0 + uuid.uuid4().int % 1000 / 10_000  # unique for the recorder match
    started = time.monotonic()

    error = run_expecting_error(
        call_mcp_tool(mcp_server.url, None, "sleep", {"seconds": seconds}, timeout_s=1.0)
    )

    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 2.5
    assert "did not answer within 1s" in str(error)
    # The call reached the server: the timeout cut the wait, not the request.
    assert len(mcp_server.calls_matching("sleep", {"seconds": seconds})) == 1


def test_concurrent_calls(mcp_server: McpTestServer) -> None:
    """Each call has its own session: concurrent calls neither mix up nor duplicate."""
    text = f"concurrent {uuid.uuid4()}"

    async def five_calls() -> list[tuple[str | None, str | None]]:
        return await asyncio.gather(
            *(
                call_mcp_tool(
                    mcp_server.url, None, "echo", {"text": f"{text} {i}"}, timeout_s=TIMEOUT_S
                )
                for i in range(5)
            )
        )

    assert run(five_calls()) == [(f"{text} {i}", None) for i in range(5)]
    for i in range(5):
        assert len(mcp_server.calls_matching("echo", {"text": f"{text} {i}"})) == 1


def test_server_echoed_secrets_are_redacted() -> None:
    """A server whose JSON-RPC error quotes the request's Authorization header: the
    McpError keeps the server's message but not the credential."""
    secret = f"s3cret-{uuid.uuid4()}"

    async def reject(request: Request) -> Response:
        return JSONResponse(
            {
                "jsonrpc": "2.0",
                "id": None,
                "error": {
                    "code": -32600,
                    "message": f"bad credentials {request.headers.get('authorization')}",
                },
            },
            status_code=401,
        )

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/mcp", reject, methods=["POST"]), Route("/health", health)])
    with serve(app, ready_path="/health") as base_url:
        error = run_expecting_error(
            list_mcp_tools(
                f"{base_url}/mcp", {"Authorization": f"Bearer {secret}"}, timeout_s=TIMEOUT_S
            )
        )

    assert "bad credentials <redacted>" in str(error)
    assert "HTTP 401" in str(error)
    assert secret not in str(error)
