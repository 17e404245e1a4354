"""Postgres crashes under load and comes back: nothing accepted is lost, nothing is left
running, and Ferry's processes ride it out.

The test has a Postgres of its own (embedded, in a temporary directory), an API process and
a worker process on it, and puts background and inline work on them. Then Postgres is
crashed the way `pg_ctl stop -m immediate` crashes it (SIGQUIT to the postmaster: no
checkpoint, every connection cut), kept down for a moment, and started again on the same
data. Every accepted response must end `completed` with its undisturbed output; requests
made during the outage get a quick 503; and the API and worker are the same processes
afterwards.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.crashable_postgres import Postgres, crashable_postgres
from tests.support.processes import (
    STARTUP_TIMEOUT_S,
    Command,
    command_env,
    free_port,
    run_command,
    wait_until_healthy,
)
from tests.support.sse import iter_frames
from tests.support.waiting import wait_for

BACKGROUND = 12
INLINE = 4
DOWN_FOR_S = 3.0
RECOVERY_TIMEOUT_S = 90.0
# Slow enough that every response is mid-stream when Postgres goes.
SLOW = "[[delay:1000]]"


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    with crashable_postgres() as server:
        yield server


@contextlib.contextmanager
def ferry_on(postgres: Postgres, upstream_url: str) -> Iterator[tuple[str, Command, Command]]:
    env = command_env(
        DATABASE_URL=postgres.url,
        UPSTREAM_BASE_URL=upstream_url,
        DB_POOL_TIMEOUT_S="2",
        WORKER_HEARTBEAT_S="0.5",
        STALL_THRESHOLD_S="3",
        RECOVERY_INTERVAL_S="1",
        INLINE_LEASE_S="3",
        EVENT_FLUSH_INTERVAL_S="0.02",
        SSE_KEEPALIVE_S="0.5",
    )
    port = free_port()
    with (
        run_command("-m", "worker", "--concurrency", str(BACKGROUND), env=env) as worker,
        run_command("-m", "app", "serve", "--no-migrate", "--port", str(port), env=env) as api,
    ):
        worker.wait_for_line(r'"worker ready"', timeout=STARTUP_TIMEOUT_S)
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(api, url)
        yield url, api, worker


def expected_text(text: str) -> str:
    return f"Hello! You said: {text}"


def test_a_postgres_crash_loses_nothing_and_leaves_nothing_running(
    postgres: Postgres, upstream_url: str
) -> None:
    with (
        ferry_on(postgres, upstream_url) as (api_url, api, worker),
        contextlib.ExitStack() as stack,
    ):
        texts: dict[str, str] = {}
        for n in range(BACKGROUND):
            text = f"background {n} {SLOW}"
            reply = httpx.post(
                f"{api_url}/v1/responses",
                json={"model": "demo", "input": text, "background": True},
                timeout=30,
            )
            assert reply.status_code == 200, reply.text
            texts[reply.json()["id"]] = text
        inline_streams = []
        for n in range(INLINE):
            text = f"inline {n} {SLOW}"
            response = stack.enter_context(
                httpx.stream(
                    "POST",
                    f"{api_url}/v1/responses",
                    json={"model": "demo", "input": text, "stream": True},
                    timeout=RECOVERY_TIMEOUT_S,
                )
            )
            assert response.status_code == 200
            frames = iter_frames(response, within_s=RECOVERY_TIMEOUT_S)
            created = next(event for _, event in frames if event["type"] == "response.created")
            texts[created["response"]["id"]] = text
            inline_streams.append(frames)
        wait_for(
            lambda: all(_status(api_url, rid) == "in_progress" for rid in texts),
            timeout_s=30,
            what="every response to be running",
        )

        postgres.crash()
        started = time.monotonic()
        during = httpx.get(f"{api_url}/v1/responses/{next(iter(texts))}", timeout=30)
        assert during.status_code == 503, during.text
        assert during.json()["error"]["code"] == "database_unavailable"
        assert time.monotonic() - started < 5.0, "a request in an outage must fail fast"
        # An admitted create waits its turn for a busy pool, but not for a database away.
        started = time.monotonic()
        body = {"model": "demo", "input": "made in the outage"}
        create = httpx.post(f"{api_url}/v1/responses", json=body, timeout=30)
        assert create.status_code == 503, create.text
        assert create.json()["error"]["code"] == "database_unavailable"
        assert time.monotonic() - started < 5.0, "a create in an outage must fail fast"
        time.sleep(DOWN_FOR_S)  # the outage itself: nothing to wait on but the clock
        postgres.start()

        # Every inline stream ends with exactly one last event, whatever it is.
        for frames in inline_streams:
            rest = [event["type"] for _, event in frames]
            assert rest, "an inline stream ended with no last event"
            assert rest[-1] in ("response.completed", "error"), rest

        def all_ended() -> dict[str, Any] | None:
            found = {rid: _response(api_url, rid) for rid in texts}
            return found if all(r["status"] != "in_progress" for r in found.values()) else None

        final = wait_for(all_ended, timeout_s=RECOVERY_TIMEOUT_S, what="every response to end")
        for response_id, response in final.items():
            assert response["status"] == "completed", response
            text = response["output"][-1]["content"][0]["text"]
            assert text == expected_text(texts[response_id].replace(SLOW, "").strip())

        assert api.popen.poll() is None and worker.popen.poll() is None, "a process died"


def _response(api_url: str, response_id: str) -> dict[str, Any]:
    reply = httpx.get(f"{api_url}/v1/responses/{response_id}", timeout=30)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def _status(api_url: str, response_id: str) -> str:
    return str(_response(api_url, response_id)["status"])
