"""A streaming create asks the model while its row is being inserted (its commit is then off
the time to first token). Nothing reaches the client before the row has committed; a row
that cannot be written leaves nothing behind: no row, no step, the model's request closed,
the process's inline slot given back.

The API runs as its own process on a database of its own, with one pooled connection: a
lock the test holds on the responses table keeps an insert waiting for as long as the test
needs, and a second create then waits for that connection until it gives up.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg
import pytest

from tests.fakes.upstream.spy import requests_mentioning, stream_end
from tests.support.clients import sdk_client
from tests.support.database import inserts_waiting_for_a_lock, migrated_scratch_database
from tests.support.processes import running_api_process
from tests.support.sse import STREAM_BOUND_S, iter_frames
from tests.support.waiting import wait_for

# How long an admitted create waits for the pool's one connection before it is told 503.
RUN_WAIT_S = 1.5


@pytest.fixture
def one_connection_api(
    service_env: dict[str, str], postgres_admin_url: str
) -> Iterator[tuple[str, str]]:
    """(the API's base URL, its database's URL)."""
    with migrated_scratch_database(postgres_admin_url) as database_url:
        env = {
            **service_env,
            "DATABASE_URL": database_url,
            "DB_POOL_MIN_SIZE": "1",
            "DB_POOL_MAX_SIZE": "1",
            "DB_POOL_TIMEOUT_S": "0.3",
            "DB_RUN_WAIT_S": str(RUN_WAIT_S),
            "MAX_INLINE_PER_PROCESS": "2",
            "LOG_LEVEL": "WARNING",
        }
        with running_api_process(env, "--no-migrate") as (_, url):
            yield url, database_url


def marker() -> str:
    return f"race-{uuid.uuid4().hex[:10]}"


def rows_mentioning(database_url: str, text: str) -> dict[str, int]:
    """Rows of the response whose request mentions `text`, and of its steps."""
    with psycopg.connect(database_url, autocommit=True) as db:
        responses = db.execute(
            "SELECT count(*) FROM responses WHERE request::text LIKE %s", (f"%{text}%",)
        ).fetchone()
        steps = db.execute(
            "SELECT count(*) FROM response_steps s JOIN responses r ON r.id = s.response_id"
            " WHERE r.request::text LIKE %s",
            (f"%{text}%",),
        ).fetchone()
    assert responses is not None and steps is not None
    return {"responses": int(responses[0]), "steps": int(steps[0])}


def test_the_model_is_asked_while_the_row_commits_and_the_client_sees_nothing_before(
    one_connection_api: tuple[str, str], upstream_url: str
) -> None:
    base_url, database_url = one_connection_api
    text = marker()
    answered = threading.Event()

    def create() -> list[Any]:
        with sdk_client(base_url, timeout=STREAM_BOUND_S) as sdk:
            stream = sdk.responses.create(model="demo", input=f"{text} hello", stream=True)
            answered.set()  # the status line and headers have arrived
            return list(stream)

    with psycopg.connect(database_url) as locker, ThreadPoolExecutor(1) as client:
        locker.execute("LOCK TABLE responses IN SHARE ROW EXCLUSIVE MODE")
        streaming = client.submit(create)
        wait_for(lambda: requests_mentioning(upstream_url, text), what="the model's request")
        wait_for(lambda: inserts_waiting_for_a_lock(database_url) == 1, what="the insert")
        assert not answered.is_set(), "a byte reached the client before the row committed"
        locker.rollback()
        events = streaming.result(timeout=STREAM_BOUND_S)

    types = [event.type for event in events]
    assert types[0] == "response.created" and types[-1] == "response.completed", types
    created = events[0].response
    with sdk_client(base_url) as sdk:
        stored = sdk.responses.retrieve(created.id)
    assert stored.status == "completed"
    assert stored.created_at == created.created_at  # the clock the run showed is the row's
    assert stored.output_text == events[-1].response.output_text
    assert rows_mentioning(database_url, text) == {"responses": 1, "steps": 1}


def test_a_create_whose_row_cannot_be_written_leaves_nothing_and_hangs_up_on_the_model(
    one_connection_api: tuple[str, str], upstream_url: str
) -> None:
    base_url, database_url = one_connection_api
    holder, refused = marker(), marker()
    # Long enough to be still streaming when its create is refused.
    slow = " ".join(["word"] * 40) + " [[delay:100]]"

    def create(text: str) -> list[Any]:
        with sdk_client(base_url, timeout=STREAM_BOUND_S) as sdk:
            return list(sdk.responses.create(model="demo", input=f"{text} hi", stream=True))

    with psycopg.connect(database_url) as locker, ThreadPoolExecutor(1) as client:
        locker.execute("LOCK TABLE responses IN SHARE ROW EXCLUSIVE MODE")
        # Its insert waits for the lock, holding the pool's one connection.
        holding = client.submit(create, holder)
        wait_for(lambda: inserts_waiting_for_a_lock(database_url) == 1, what="the first insert")
        reply = httpx.post(
            f"{base_url}/v1/responses",
            json={"model": "demo", "input": f"{refused} {slow}", "stream": True},
            timeout=STREAM_BOUND_S,
        )
        assert reply.status_code == 503, reply.text
        assert set(reply.json()["error"]) == {"message", "type", "param", "code"}
        locker.rollback()
        assert [e.type for e in holding.result(timeout=STREAM_BOUND_S)][-1] == "response.completed"

    assert requests_mentioning(upstream_url, refused), "the model was asked while it waited"
    assert stream_end(upstream_url, refused) == "abandoned"
    assert rows_mentioning(database_url, refused) == {"responses": 0, "steps": 0}
    assert_both_inline_slots_free(base_url)


def assert_both_inline_slots_free(base_url: str) -> None:
    """With MAX_INLINE_PER_PROCESS=2, a second create is admitted while a first still runs:
    no slot was kept by a create that failed."""
    body = {"model": "demo", "input": "still running [[delay:200]] a b c d e f g h", "stream": True}
    with httpx.stream("POST", f"{base_url}/v1/responses", json=body, timeout=30) as running:
        assert running.status_code == 200
        next(iter_frames(running))  # it is running
        second = httpx.post(
            f"{base_url}/v1/responses", json={"model": "demo", "input": "and me"}, timeout=30
        )
        assert second.status_code == 200, second.text
