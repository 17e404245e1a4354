"""The inline stream's lifetime: keep-alives while idle, and a client that walks away."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import psycopg

from app.config import Settings
from tests.fakes.upstream.spy import stream_end
from tests.support.servers import running_api
from tests.support.sse import iter_frames
from tests.support.waiting import wait_for


def test_idle_stream_sends_comment_keepalives(api_url: str) -> None:
    # The demo waits 1.2 s between words; the test API sends a keep-alive every 0.5 s.
    body = {"model": "demo", "input": "slow [[delay:1200]]", "stream": True}
    with httpx.stream("POST", f"{api_url}/v1/responses", json=body, timeout=30) as response:
        lines = list(response.iter_lines())
    assert ": keep-alive" in lines
    assert any(line == "event: response.completed" for line in lines)


def test_client_disconnect_cancels_the_work_and_records_it(
    api_url: str, upstream_url: str, db: psycopg.Connection[dict[str, Any]]
) -> None:
    words = "disconnect-me " + " ".join(f"w{i}" for i in range(30))
    body = {"model": "demo", "input": f"{words} [[delay:300]]", "stream": True}
    response_id = None
    with httpx.stream("POST", f"{api_url}/v1/responses", json=body, timeout=30) as response:
        for _, event in iter_frames(response):
            if event["type"] == "response.created":
                response_id = event["response"]["id"]
            if event["type"] == "response.output_text.delta":
                break  # walk away mid-stream
    assert response_id is not None

    def ended() -> dict[str, Any] | None:
        row = db.execute(
            "SELECT status, output, lease_owner FROM responses WHERE id = %s", (response_id,)
        ).fetchone()
        return row if row and row["status"] != "in_progress" else None

    # 30 words at 300 ms would take 9 s; cancelled work ends long before that.
    row = wait_for(ended, timeout_s=5, what="the row to leave in_progress")
    assert row["status"] == "cancelled"
    assert row["lease_owner"] is None
    [message] = row["output"]
    assert message["status"] == "incomplete"
    assert message["content"][0]["text"].startswith("Hello!")
    step = db.execute(
        "SELECT status FROM response_steps WHERE response_id = %s", (response_id,)
    ).fetchone()
    assert step == {"status": "cancelled"}

    # Ferry hung up on the upstream rather than letting it stream on.
    assert stream_end(upstream_url, "disconnect-me", timeout_s=5) == "abandoned"


def test_inline_lease_is_renewed_while_running_and_released_at_the_end(
    make_settings: Callable[..., Settings], db: psycopg.Connection[dict[str, Any]]
) -> None:
    # A 1.2 s lease, renewed every 0.4 s, on a response that streams for about 3 s: the
    # lease can only still be live at the last words if it was renewed.
    with running_api(make_settings(inline_lease_s=1.2)) as url:
        body = {"model": "demo", "input": "a b c [[delay:600]]", "stream": True}
        leases = []
        with httpx.stream("POST", f"{url}/v1/responses", json=body, timeout=30) as response:
            for _, event in iter_frames(response):
                if event["type"] == "response.created":
                    response_id = event["response"]["id"]
                elif event["type"] == "response.output_text.delta":
                    leases.append(
                        db.execute(
                            "SELECT lease_owner IS NOT NULL AS held,"
                            " lease_expires_at > now() AS live FROM responses WHERE id = %s",
                            (response_id,),
                        ).fetchone()
                    )
    assert len(leases) == 6  # "Hello! You said: a b c"
    assert all(lease == {"held": True, "live": True} for lease in leases)
    final = db.execute(
        "SELECT status, lease_owner FROM responses WHERE id = %s", (response_id,)
    ).fetchone()
    assert final == {"status": "completed", "lease_owner": None}
