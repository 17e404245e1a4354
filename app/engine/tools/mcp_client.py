"""A small client for remote MCP servers over streamable HTTP (the official `mcp` 2.x SDK).

Every call opens its own session and closes it before returning: sessions are short, and a
fresh one per call means no shared state to repair after a server restarts or drops us. The
SDK runs its transport in anyio task groups; entering and leaving them only through the SDK's
async context managers is what guarantees no task or connection outlives the call.

Failures of the conversation itself (unreachable, not an MCP server, HTTP error, timeout,
malformed replies) raise `McpError`. A tool that ran and reported failure (`isError`) is not
an exception: `call_mcp_tool` returns it as `(None, error_text)`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx2
import mcp_types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from app.shapes import JsonObject

log = logging.getLogger(__name__)

# Identifies us to servers (the SDK would otherwise send its generic default, "mcp").
_CLIENT_INFO = mcp_types.Implementation(name="ferry", version="0.1.0")
# A server whose cursors never end must not keep us listing forever.
_MAX_LIST_PAGES = 100
# Header values at least this long are removed from error messages (see `_scrub`).
_MIN_SCRUBBED_LEN = 4

_T = TypeVar("_T")


@dataclass(frozen=True)
class McpTool:
    name: str
    description: str | None
    input_schema: JsonObject  # JSON Schema
    annotations: JsonObject | None


class McpError(Exception):
    """Talking to the MCP server failed: unreachable, not MCP, HTTP error, timeout, bad reply.

    Messages name the server by its URL without userinfo, query or fragment, and never
    include request headers: both may carry credentials.
    """


async def list_mcp_tools(
    server_url: str, headers: dict[str, str] | None, *, timeout_s: float
) -> list[McpTool]:
    """Every tool the server offers, following pagination cursors."""

    async def op(client: Client) -> list[McpTool]:
        tools: list[McpTool] = []
        cursor: str | None = None
        for _ in range(_MAX_LIST_PAGES):
            page = await client.list_tools(cursor=cursor)
            tools.extend(_to_mcp_tool(tool) for tool in page.tools)
            cursor = page.next_cursor
            if cursor is None:
                return tools
        raise McpError(
            f"MCP server at {_safe_url(server_url)} returned more than {_MAX_LIST_PAGES} "
            "pages of tools"
        )

    return await _with_session(server_url, headers, timeout_s, op)


async def call_mcp_tool(
    server_url: str,
    headers: dict[str, str] | None,
    name: str,
    arguments: JsonObject,
    *,
    timeout_s: float,
) -> tuple[str | None, str | None]:
    """Call one tool: `(output, None)` on success, `(None, error_text)` when it reports isError."""

    async def op(client: Client) -> mcp_types.CallToolResult:
        return await client.call_tool(name, arguments)

    result = await _with_session(server_url, headers, timeout_s, op)
    text = _result_text(result)
    if result.is_error:
        # An isError result with no content still has to tell the model something.
        return None, text or f"MCP tool {name} failed without a message"
    return text, None


async def _with_session(
    server_url: str,
    headers: dict[str, str] | None,
    timeout_s: float,
    op: Callable[[Client], Awaitable[_T]],
) -> _T:
    """Open a session, run `op`, close the session; all of it bounded by `timeout_s`."""
    done: list[_T] = []
    # The status of the latest POST. The SDK turns HTTP errors into JSON-RPC errors with
    # generic messages ("Server returned an error response"); the status says more. The
    # latest, because an earlier 4xx can be harmless (the version probe of an older server),
    # and only POSTs, because a 405 on the optional GET stream or the session DELETE is normal.
    post_statuses: list[int] = []

    async def note_post_status(response: httpx2.Response) -> None:
        if response.request.method == "POST":
            post_statuses.append(response.status_code)

    try:
        # One deadline over connect, handshake, the operation and teardown. anyio's cancel
        # scope (not asyncio.timeout) because the SDK is anyio inside: its level-triggered
        # cancellation also cuts short the session DELETE at teardown instead of letting it
        # start a fresh wait after the deadline.
        with anyio.fail_after(timeout_s):
            # Our own HTTP client so the headers (often auth) go on every request, and so no
            # single HTTP operation waits longer than the deadline (the SDK's default client
            # allows 300 s reads). streamable_http_client leaves a client it was given open,
            # hence the outer context manager that closes it after the session.
            async with httpx2.AsyncClient(
                headers=headers or {},
                timeout=httpx2.Timeout(timeout_s),
                event_hooks={"response": [note_post_status]},
            ) as http:
                transport = streamable_http_client(server_url, http_client=http)
                # cache=None: a response cache is per Client, and each Client lives for one
                # operation, so it could never be hit.
                async with Client(transport, cache=None, client_info=_CLIENT_INFO) as client:
                    done.append(await op(client))
    except McpError:
        raise
    except Exception as exc:
        if done:
            # The operation completed and only closing the session failed or ran out of
            # time. Dropping the result would make a caller retry a tool that already ran.
            log.warning(
                "MCP session teardown failed after a completed operation",
                extra={"server": _safe_url(server_url), "error": type(exc).__name__},
            )
            return done[0]
        status = post_statuses[-1] if post_statuses and post_statuses[-1] >= 400 else None
        error = _to_mcp_error(exc, server_url, timeout_s, status)
        raise McpError(_scrub(str(error), server_url, headers)) from exc
    return done[0]


def _to_mcp_tool(tool: mcp_types.Tool) -> McpTool:
    annotations = (
        tool.annotations.model_dump(mode="json", by_alias=True, exclude_none=True)
        if tool.annotations is not None
        else None
    )
    return McpTool(
        name=tool.name,
        description=tool.description,
        input_schema=tool.input_schema,
        annotations=annotations,
    )


def _result_text(result: mcp_types.CallToolResult) -> str:
    """What the model sees: text blocks verbatim, other blocks (images, resources) as JSON."""
    has_text = any(isinstance(block, mcp_types.TextContent) for block in result.content)
    if not has_text and result.structured_content is not None:
        # Structured-only results (or ones whose blocks are all binary) read best as JSON.
        return json.dumps(result.structured_content)
    parts = [
        block.text
        if isinstance(block, mcp_types.TextContent)
        else json.dumps(block.model_dump(mode="json", by_alias=True, exclude_none=True))
        for block in result.content
    ]
    return "\n".join(parts)


def _to_mcp_error(
    exc: Exception, server_url: str, timeout_s: float, http_status: int | None
) -> McpError:
    server = _safe_url(server_url)
    cause = _first_leaf(exc)
    if isinstance(cause, McpError):
        # Our own error from inside `op`, wrapped by a task group on the way out. A new
        # instance, so that chaining it to `exc` cannot make a cycle.
        return McpError(str(cause))
    if isinstance(cause, TimeoutError | httpx2.TimeoutException):
        return McpError(f"MCP server at {server} did not answer within {timeout_s:g}s")
    if isinstance(cause, httpx2.ConnectError):
        return McpError(f"could not connect to MCP server at {server}: {cause}")
    if isinstance(cause, MCPError):
        # The SDK also reports HTTP-level rejections this way (e.g. 404 → -32601 "Not
        # Found", a non-MCP content type → "Unexpected content type").
        detail = f"{cause.message} (code {cause.code})"
        if http_status is not None:
            detail = f"HTTP {http_status}: {detail}"
        return McpError(f"MCP server at {server} failed: {detail}")
    if isinstance(cause, httpx2.HTTPError):
        return McpError(f"HTTP error talking to MCP server at {server}: {cause}")
    return McpError(f"MCP request to {server} failed: {type(cause).__name__}: {cause}")


def _scrub(message: str, server_url: str, headers: dict[str, str] | None) -> str:
    """Remove credentials that library or server text may have echoed into `message`.

    Belt and braces: our own text never includes them, but exception messages from the HTTP
    library can quote the full URL, and a server's error can quote a request header.
    """
    message = message.replace(server_url, _safe_url(server_url))
    for value in (headers or {}).values():
        # Very short values would garble the message and are not meaningful secrets.
        if len(value) >= _MIN_SCRUBBED_LEN:
            message = message.replace(value, "<redacted>")
    return message


def _first_leaf(exc: BaseException) -> BaseException:
    # The SDK's task groups wrap the real cause in (possibly nested) exception groups.
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _safe_url(url: str) -> str:
    """The URL without userinfo, query and fragment, which may hold credentials."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port is not None else host
    except ValueError:
        return "<invalid URL>"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
