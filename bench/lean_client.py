"""A lean HTTP/1.1 client for the benchmark: asyncio streams, keep-alive, and no parsing of
what it receives beyond the HTTP framing.

A stream's tokens are counted by looking for a byte marker (`event:
response.output_text.delta` in Ferry's SSE, `"content":"` in the upstream's chunks), not by
decoding JSON, so the client costs little per token and is the same on both paths: the
numbers measure the servers, not this. It records when the first marker arrived (time to
first token) and when the body ended.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType

# Failures of a connection the server may have closed while it sat idle in keep-alive.
STALE = (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError)
HEADERS_LIMIT = 64 * 1024


@dataclass
class Reply:
    """What one request got back."""

    status: int
    counts: list[int]  # occurrences of each marker in the body, in the order asked
    first_marker_s: float | None  # from sending to the first occurrence of the first marker
    total_s: float  # from sending to the end of the body
    body: bytes = b""  # only when kept

    def count(self, index: int = 0) -> int:
        return self.counts[index]


@dataclass
class MarkerCounter:
    """Occurrences of byte markers in a body that arrives in pieces."""

    markers: tuple[bytes, ...]
    counts: list[int] = field(default_factory=list)
    tails: list[bytes] = field(default_factory=list)
    first_at: float | None = None

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.markers)
        self.tails = [b""] * len(self.markers)

    def feed(self, data: bytes) -> None:
        for i, marker in enumerate(self.markers):
            # The end of the previous piece, one byte short of a marker: a marker cut in two
            # by the network is counted once, and none is counted twice.
            window = self.tails[i] + data
            self.counts[i] += window.count(marker)
            self.tails[i] = window[-(len(marker) - 1) :] if len(marker) > 1 else b""
        if self.first_at is None and self.markers and self.counts[0]:
            self.first_at = time.perf_counter()


class Connection:
    """One keep-alive connection to `host:port`; requests on it go one after another."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass  # already reset by the other side

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        markers: tuple[bytes, ...] = (),
        keep_body: bool = False,
    ) -> Reply:
        """Send one request and read the whole reply, counting `markers` in its body.

        A connection the server closed while it was idle is opened again, once."""
        reused = self._writer is not None
        try:
            return await self._exchange(method, path, body, markers, keep_body)
        except STALE:
            await self.close()
            if not reused:
                raise
        return await self._exchange(method, path, body, markers, keep_body)

    async def _exchange(
        self, method: str, path: str, body: bytes, markers: tuple[bytes, ...], keep_body: bool
    ) -> Reply:
        started = time.perf_counter()
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(
                self.host, self.port, limit=HEADERS_LIMIT
            )
        reader, writer = self._reader, self._writer
        assert reader is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode() + body)
        status, headers = await _read_head(reader)
        counter = MarkerCounter(markers)
        kept = bytearray()
        async for piece in _read_body(reader, headers):
            counter.feed(piece)
            if keep_body:
                kept += piece
        if headers.get("connection") == "close":
            await self.close()
        ended = time.perf_counter()
        first = None if counter.first_at is None else counter.first_at - started
        return Reply(status, counter.counts, first, ended - started, bytes(kept))


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    raw = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = raw.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    return int(status_line.split(" ", 2)[1]), headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> AsyncIterator[bytes]:
    """The body's pieces as they arrive: chunked, sized, or up to the end of the connection."""
    if "chunked" in headers.get("transfer-encoding", ""):
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailers: none expected, read past them all the same
                return
            yield (await reader.readexactly(size + 2))[:-2]
    elif "content-length" in headers:
        yield await reader.readexactly(int(headers["content-length"]))
    else:
        yield await reader.read()
        headers["connection"] = "close"
