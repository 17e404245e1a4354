"""A burst of inline streams against one API process: each is either refused up front (429
with Retry-After, before any byte of a stream) or runs to exactly one terminal event; an
admitted create waits its turn for a busy connection pool instead of failing.

The API runs as its own process, as in production; the burst is bounded (BURST requests,
loopback only) and every read is bounded in time.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest

from tests.support.database import inserts_waiting_for_a_lock, migrated_scratch_database
from tests.support.processes import free_port, run_command, wait_until_healthy
from tests.support.scrape import scrape
from tests.support.sse import frames_from_lines
from tests.support.waiting import wait_for

BURST = 1000
MAX_INLINE = 256
STREAM_BOUND_S = 120.0


TERMINAL_TYPES = {"response.completed", "response.failed", "response.incomplete", "error"}


@pytest.fixture(scope="module")
def burst_api_url(service_env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    env = {
        **service_env,
        "MAX_INLINE_PER_PROCESS": str(MAX_INLINE),
        "LOG_LEVEL": "WARNING",
    }
    with run_command("-m", "app", "serve", "--no-migrate", "--port", str(port), env=env) as api:
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(api, url)
        yield url


async def one_stream(client: httpx.AsyncClient, number: int) -> tuple[str, list[str]]:
    """('refused', []) for a 429, else ('streamed', the event types in order)."""
    body = {"model": "demo", "input": f"burst {number}", "stream": True}
    async with client.stream("POST", "/v1/responses", json=body) as response:
        if response.status_code == 429:
            assert response.headers.get("retry-after"), "a 429 must say when to retry"
            assert json.loads(await response.aread())["error"]["code"] == "rate_limit_exceeded"
            return "refused", []
        assert response.status_code == 200, await response.aread()
        lines: list[str] = []
        async for line in response.aiter_lines():
            lines.append(line)
        return "streamed", [event["type"] for _, event in frames_from_lines(iter(lines))]


async def burst(base_url: str) -> list[tuple[str, list[str]]]:
    limits = httpx.Limits(max_connections=BURST + 10, max_keepalive_connections=0)
    timeout = httpx.Timeout(STREAM_BOUND_S, connect=STREAM_BOUND_S, pool=STREAM_BOUND_S)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as client:
        async with asyncio.timeout(STREAM_BOUND_S):
            return await asyncio.gather(*(one_stream(client, n) for n in range(BURST)))


def test_a_burst_of_inline_streams_is_refused_or_completed_never_cut(burst_api_url: str) -> None:
    outcomes = asyncio.run(burst(burst_api_url))

    kinds = Counter(kind for kind, _ in outcomes)
    assert kinds["refused"] + kinds["streamed"] == BURST
    # A full house ran; beyond it the burst was refused (a slot freed by a stream that had
    # already finished may admit a late arrival, so the count is a floor).
    assert kinds["streamed"] >= MAX_INLINE
    assert kinds["refused"] > 0
    for kind, types in outcomes:
        if kind == "refused":
            continue
        terminal = [t for t in types if t in TERMINAL_TYPES]
        assert terminal == ["response.completed"], types
        assert types[-1] == "response.completed"


POOL_TIMEOUT_S = 0.5
CREATES = 3


@pytest.fixture
def one_connection_api(
    service_env: dict[str, str], postgres_admin_url: str
) -> Iterator[tuple[str, str]]:
    """An API whose pool holds one connection and waits for it only POOL_TIMEOUT_S, on a
    database of its own: (its base URL, the database URL)."""
    with migrated_scratch_database(postgres_admin_url) as database_url:
        port = free_port()
        env = {
            **service_env,
            "DATABASE_URL": database_url,
            "DB_POOL_MIN_SIZE": "1",
            "DB_POOL_MAX_SIZE": "1",
            "DB_POOL_TIMEOUT_S": str(POOL_TIMEOUT_S),
            "LOG_LEVEL": "WARNING",
        }
        args = ("-m", "app", "serve", "--no-migrate", "--port", str(port))
        with run_command(*args, env=env) as api:
            url = f"http://127.0.0.1:{port}"
            wait_until_healthy(api, url)
            yield url, database_url


async def blocking_creates(base_url: str) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=base_url, timeout=STREAM_BOUND_S) as client:
        return await asyncio.gather(
            *(
                client.post("/v1/responses", json={"model": "demo", "input": f"turn {n}"})
                for n in range(CREATES)
            )
        )


def test_admitted_creates_wait_their_turn_for_a_busy_pool_rather_than_fail(
    one_connection_api: tuple[str, str],
) -> None:
    base_url, database_url = one_connection_api
    with psycopg.connect(database_url) as locker:
        # Inserts wait for this lock: the first create holds the pool's one connection.
        locker.execute("LOCK TABLE responses IN SHARE ROW EXCLUSIVE MODE")
        with ThreadPoolExecutor(1) as client:
            creates = client.submit(asyncio.run, blocking_creates(base_url))
            wait_for(lambda: inserts_waiting_for_a_lock(database_url) == 1, what="the first")
            wait_for(
                lambda: scrape(base_url).value("ferry_db_pool_waiting") >= CREATES - 1,
                what="the others to queue for the connection",
            )
            # What is tested is a wait longer than the pool's timeout: only the clock says so.
            time.sleep(POOL_TIMEOUT_S * 3)
            locker.rollback()
            replies = creates.result(timeout=STREAM_BOUND_S)

    assert [reply.status_code for reply in replies] == [200] * CREATES, [r.text for r in replies]
    assert {reply.json()["status"] for reply in replies} == {"completed"}
