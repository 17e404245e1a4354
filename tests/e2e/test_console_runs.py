"""The console across processes: database admin keys (`ferry keys create --admin`) and their
sessions on two API replicas, owners shown by key name and prefix, the live tail of a
response's log (replayed, followed to its end, resumed with Last-Event-ID), and a worker
killed mid-response told on the timeline as a stopped attempt and a retried job.

A database of its own: a key made here locks the API, which the suite's open API must not be.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import psycopg
import pytest

from app.config import Settings
from tests.fakes.upstream.spy import stream_state
from tests.support.clients import sdk_client
from tests.support.console import ConsoleClient, console_client
from tests.support.database import migrated_scratch_database
from tests.support.processes import (
    STARTUP_TIMEOUT_S,
    Command,
    command_env,
    run_command,
    running_worker,
)
from tests.support.servers import running_api
from tests.support.waiting import wait_for

# Workers that are found dead within seconds, so a test can watch a recovery.
FAST_RECOVERY = {
    "WORKER_HEARTBEAT_S": "0.5",
    "STALL_THRESHOLD_S": "2",
    "RECOVERY_INTERVAL_S": "1",
    "EVENT_FLUSH_INTERVAL_S": "0.02",
}
SLOW = " ".join(f"w{i}" for i in range(30)) + " [[delay:100]]"


@dataclass(frozen=True)
class Cluster:
    database_url: str
    api: str  # one replica
    other_api: str  # another, on the same database
    worker_env: dict[str, str]
    admin_key: str  # made with --admin
    alice_key: str  # an ordinary key


def ferry_keys(database_url: str, *args: str) -> tuple[int, str]:
    """`python -m app keys <args>`: its exit status and stdout."""
    with run_command("-m", "app", "keys", *args, env=command_env(DATABASE_URL=database_url)) as ran:
        code = ran.wait_exit(STARTUP_TIMEOUT_S)
    return code, ran.output("stdout")


def create_key(database_url: str, name: str, *options: str) -> str:
    code, key = ferry_keys(database_url, "create", "--name", name, *options)
    assert code == 0 and key.strip().startswith("sk-")
    return key.strip()


@pytest.fixture(scope="module")
def cluster(
    postgres_admin_url: str, upstream_url: str, make_settings: Callable[..., Settings]
) -> Iterator[Cluster]:
    with migrated_scratch_database(postgres_admin_url) as database_url:
        admin_key = create_key(database_url, "ops", "--admin")
        alice_key = create_key(database_url, "alice")
        settings = make_settings(database_url=database_url)
        env = command_env(
            DATABASE_URL=database_url, UPSTREAM_BASE_URL=upstream_url, **FAST_RECOVERY
        )
        with running_api(settings) as api, running_api(settings) as other_api:
            yield Cluster(database_url, api, other_api, env, admin_key, alice_key)


@pytest.fixture
def alice(cluster: Cluster) -> Iterator[openai.OpenAI]:
    with sdk_client(cluster.api, cluster.alice_key, timeout=30) as client:
        yield client


@contextlib.contextmanager
def admin_on(base_url: str, key: str) -> Iterator[ConsoleClient]:
    with console_client(base_url) as console:
        assert console.log_in(key).status_code == 303
        yield console


def test_keys_create_admin_makes_a_key_that_opens_the_console(cluster: Cluster) -> None:
    code, listing = ferry_keys(cluster.database_url, "list", "--json")
    assert code == 0
    admin_flags = {entry["name"]: entry["admin"] for entry in json.loads(listing)}
    assert admin_flags["ops"] is True and admin_flags["alice"] is False

    with console_client(cluster.api) as console:
        assert console.log_in(cluster.alice_key).status_code == 401  # not an admin's key
    with admin_on(cluster.api, cluster.admin_key) as console:
        page = console.page("/console").text
        assert f"ops ({cluster.admin_key[:11]}…)" in page
        assert cluster.admin_key not in page


def test_a_session_holds_on_every_replica_until_its_key_is_revoked(cluster: Cluster) -> None:
    key = create_key(cluster.database_url, "ops-temp", "--admin")
    with admin_on(cluster.api, key) as here, console_client(cluster.other_api) as there:
        # Signed with the secret both replicas read from the database.
        there.http.cookies.set("ferry_console", here.http.cookies["ferry_console"], path="/console")
        assert there.page("/console").status_code == 200

        assert ferry_keys(cluster.database_url, "revoke", "ops-temp")[0] == 0
        assert here.page("/console").status_code == 303
        assert there.page("/console").status_code == 303


def test_responses_show_their_key_by_name_and_prefix(
    cluster: Cluster, alice: openai.OpenAI
) -> None:
    made = alice.responses.create(model="demo", input="whose is this")
    prefix = cluster.alice_key[:11]
    with admin_on(cluster.api, cluster.admin_key) as console:
        page = console.page(f"/console/responses/{made.id}").text
        assert ">alice</span>" in page and f"{prefix}…" in page
        assert cluster.alice_key not in page
        for key_filter in ("alice", prefix, prefix[:6]):
            listed = console.page(f"/console?key={key_filter}").text
            assert f'<tr data-id="{made.id}">' in listed, key_filter
        assert f'<tr data-id="{made.id}">' not in console.page("/console?key=bob").text


def sse_frames(response: httpx.Response) -> Iterator[tuple[str | None, str | None, str]]:
    """(event name, id, data) of each frame; comments (keep-alives) skipped."""
    name: str | None = None
    frame_id: str | None = None
    data: list[str] = []
    for line in response.iter_lines():
        if line == "":
            if data:
                yield name, frame_id, "\n".join(data)
            name, frame_id, data = None, None, []
        elif line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("id: "):
            frame_id = line.removeprefix("id: ")
        elif line.startswith("data: "):
            data.append(line.removeprefix("data: "))


def tail(console: ConsoleClient, response_id: str, **headers: str) -> list[dict[str, Any]]:
    """The console's tail of the response's log, read to its `end` frame."""
    lines = []
    url = f"/console/responses/{response_id}/events"
    with console.http.stream("GET", url, headers=headers) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        for name, frame_id, data in sse_frames(reply):
            if name == "end":
                return lines
            line = json.loads(data)
            assert frame_id == str(line["seq"])
            lines.append(line)
    raise AssertionError("the tail ended without its end frame")


def test_the_live_tail_replays_follows_and_resumes_on_any_replica(
    cluster: Cluster, alice: openai.OpenAI
) -> None:
    with running_worker(cluster.worker_env, concurrency=2):
        with alice.responses.create(
            model="demo", input=f"tail me {SLOW}", background=True, stream=True
        ) as stream:
            response_id = next(iter(stream)).response.id
        # Followed on the other replica, live, from the start to the terminal event.
        with admin_on(cluster.other_api, cluster.admin_key) as console:
            lines = tail(console, response_id)
            assert [line["seq"] for line in lines] == list(range(len(lines)))
            assert lines[0]["type"] == "response.created"
            assert lines[-1]["type"] == "response.completed"
            assert lines[-1]["text"] == "status completed"
            deltas = [line for line in lines if line["type"] == "response.output_text.delta"]
            assert "".join(line["text"] for line in deltas).endswith("w29")
            # What the API's own resumable stream holds, event for event.
            with alice.responses.retrieve(response_id, stream=True) as replay:
                assert [event.type for event in replay] == [line["type"] for line in lines]

            resumed = tail(console, response_id, **{"Last-Event-ID": "3"})
            assert [line["seq"] for line in resumed] == list(range(4, len(lines)))

            bad = console.http.get(
                f"/console/responses/{response_id}/events", headers={"Last-Event-ID": "x"}
            )
            assert bad.status_code == 400 and bad.json()["error"]["param"] == "after"
            logless = alice.responses.create(model="demo", input="no log")
            refused = console.http.get(f"/console/responses/{logless.id}/events")
            assert refused.status_code == 400 and refused.json()["error"]["param"] == "stream"


def steps_of(database_url: str, response_id: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as db:
        row = db.execute(
            "SELECT count(*) FROM response_steps WHERE response_id = %s", (response_id,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def kill(process: Command) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def test_a_worker_killed_mid_response_is_a_stopped_attempt_on_the_timeline(
    cluster: Cluster, alice: openai.OpenAI, upstream_url: str
) -> None:
    marker = f"console-kill-{uuid.uuid4().hex[:8]}"
    with running_worker(cluster.worker_env, concurrency=2) as first:
        queued = alice.responses.create(model="demo", input=f"{marker} {SLOW}", background=True)
        wait_for(lambda: stream_state(upstream_url, marker) == "open", what="the first attempt")
        # The step's row is written while the request is on its way: killed before it
        # commits, the attempt would leave no step behind to show as abandoned.
        wait_for(lambda: steps_of(cluster.database_url, queued.id) == 1, what="its step")
        kill(first)
    with running_worker(cluster.worker_env, concurrency=2):
        wait_for(
            lambda: alice.responses.retrieve(queued.id).status == "completed",
            timeout_s=60,
            what="the retried job to finish the response",
        )
    with admin_on(cluster.api, cluster.admin_key) as console:
        page = console.page(f"/console/responses/{queued.id}").text
    timeline = page[page.index('id="timeline"') :]
    told = [
        timeline.index(what)
        for what in (
            ">queued<",
            ">picked up (attempt 1)<",
            "abandoned: the process running it stopped",
            ">attempt 1 stopped<",
            ">picked up (attempt 2)<",
            "attempt 2 · ",
            'class="entry k-ended"',
        )
    ]
    assert told == sorted(told), timeline
    assert "<dt>attempts</dt><dd>2" in page
