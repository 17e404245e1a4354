"""An upstream's refusal of a response's first model turn, and the HTTP error a blocking
create answers with because of it.

A refusal is a 4xx the upstream still gave after its retries (an unknown model, a context
too long, a rate limit). It is kept on the response row, which is recorded `failed` as any
failure is. A blocking create (not streaming, not background, not flex) whose first model
turn was refused answers with the refusal as an error status instead of a `failed` 200: no
work was done, and the client's request is what the upstream turned down. Only the first
turn counts: a later one comes after tool calls ran, and that work is reported in the
`failed` response. Streams and deferred responses report every failure through
`response.failed`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

from app.engine.chat.client import Chunk, UpstreamError
from app.engine.errors import UpstreamRefused
from app.shapes import UpstreamRefusal
from app.store.rows import StoredResponse


class RefusalWatch:
    """Passes a model turn's chunks through, noting the refusal they ended with, if any."""

    def __init__(self) -> None:
        self.refusal: UpstreamRefusal | None = None

    async def chunks(self, chunks: AsyncGenerator[Chunk]) -> AsyncGenerator[Chunk]:
        try:
            # aclosing: a turn cut short closes the upstream request at once, as without us.
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    yield chunk
        except UpstreamError as exc:
            self.refusal = exc.refusal
            raise

    def of_turn(self, *, turns_before: int) -> UpstreamRefusal | None:
        """The refusal to keep on the response: only a 4xx, only of its first model turn."""
        refusal = self.refusal
        if refusal is None or turns_before > 0 or not 400 <= refusal["status"] < 500:
            return None
        return refusal


def answers_blocking(stored: StoredResponse) -> bool:
    """Whether the response was created by a request that waits for it and gets it whole."""
    return not (stored.stream or stored.background or stored.service_tier == "flex")


def refused_blocking_create(stored: StoredResponse) -> UpstreamRefused | None:
    """The error a blocking create answers with when the upstream refused its first turn."""
    refusal = stored.upstream_refusal
    if refusal is None or not answers_blocking(stored):
        return None
    return UpstreamRefused(refusal, response_id=stored.id)
