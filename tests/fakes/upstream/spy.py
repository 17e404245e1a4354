"""Reading the fake's request spy from a test: what Ferry sent upstream, how each stream ended."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.waiting import wait_for


def spied_requests(upstream_url: str) -> list[dict[str, Any]]:
    """The completion requests the fake at `upstream_url` (as in UPSTREAM_BASE_URL) received."""
    reply = httpx.get(f"{upstream_url.removesuffix('/v1')}/_demo/requests", timeout=10)
    assert reply.status_code == 200, reply.text
    return list(reply.json())


def requests_mentioning(upstream_url: str, marker: str) -> list[dict[str, Any]]:
    """The requests whose messages carry `marker`, a text that only one test sends."""
    return [r for r in spied_requests(upstream_url) if marker in str(r["body"]["messages"])]


def stream_state(upstream_url: str, marker: str) -> str | None:
    """The latest stream for `marker`: None before it, then "open", "finished" or "abandoned"."""
    mine = requests_mentioning(upstream_url, marker)
    return mine[-1]["stream"] if mine else None


def stream_end(upstream_url: str, marker: str, *, timeout_s: float = 15.0) -> str:
    """How the latest stream for `marker` ended, once it has: "finished" or "abandoned"."""
    return wait_for(
        lambda: (state := stream_state(upstream_url, marker)) not in (None, "open") and state,
        timeout_s=timeout_s,
        what=f"the upstream stream for {marker} to end",
    )
