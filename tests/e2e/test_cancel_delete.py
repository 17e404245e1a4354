"""Cancel and delete: work really stops, a cancelled stream ends cleanly, both idempotent."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import psycopg
import pytest

from app.config import Settings
from tests.fakes.upstream.spy import stream_end, stream_state
from tests.support.clients import sdk_client
from tests.support.database import migrated_scratch_database
from tests.support.schema import assert_valid_response
from tests.support.servers import running_api
from tests.support.waiting import wait_for

SLOW = " ".join(f"w{i}" for i in range(40)) + " [[delay:150]]"


def running_slowly(client: openai.OpenAI, upstream_url: str, marker: str) -> str:
    """Create a background response whose answer streams slowly, and wait until a worker
    has the upstream stream (found by `marker`) open: the response's id."""
    queued = client.responses.create(model="demo", input=f"{marker} {SLOW}", background=True)
    wait_for(lambda: stream_state(upstream_url, marker) == "open")
    return queued.id


@pytest.mark.usefixtures("worker")
def test_cancel_running_stops_the_upstream_call_and_is_idempotent(
    client: openai.OpenAI, upstream_url: str
) -> None:
    response_id = running_slowly(client, upstream_url, "cancel-running")

    raw = client.responses.with_raw_response.cancel(response_id)
    assert_valid_response(raw.http_response.json())
    cancelled = raw.parse()
    assert cancelled.status == "cancelled"
    assert stream_end(upstream_url, "cancel-running") == "abandoned"

    again = client.responses.cancel(response_id)
    assert again.status == "cancelled"
    assert again.output == cancelled.output
    assert client.responses.retrieve(response_id).status == "cancelled"


@pytest.mark.usefixtures("worker")
def test_cancelled_stream_ends_with_a_terminal_event(client: openai.OpenAI, api_url: str) -> None:
    events: list[Any] = []
    with client.responses.create(
        model="demo", input=f"cancel-stream {SLOW}", background=True, stream=True
    ) as stream:
        for event in stream:
            events.append(event)
            if event.type == "response.output_text.delta":
                client.responses.cancel(events[0].response.id)
                break
        events.extend(stream)  # the rest, up to the end the cancel made

    # Not one of the SDK's typed events: it hands the payload over as parsed JSON.
    assert events[-1].type == "response.cancelled"
    assert events[-1].response["status"] == "cancelled"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    url = f"{api_url}/v1/responses/{events[0].response.id}"
    with httpx.stream("GET", url, params={"stream": "true"}, timeout=30) as replayed:
        lines = [line for line in replayed.iter_lines() if line.startswith("event:")]
    assert lines[-1] == "event: response.cancelled"
    assert len(lines) == len(events)


@pytest.mark.usefixtures("worker")
def test_cancel_of_a_finished_response_returns_it_unchanged(client: openai.OpenAI) -> None:
    queued = client.responses.create(model="demo", input="done soon", background=True)
    wait_for(lambda: client.responses.retrieve(queued.id).status == "completed")
    assert client.responses.cancel(queued.id).status == "completed"


def test_cancel_of_a_synchronous_response_is_400(client: openai.OpenAI) -> None:
    inline = client.responses.create(model="demo", input="sync")
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.cancel(inline.id)
    assert info.value.body["message"] == "Cannot cancel a synchronous response."  # type: ignore[index]
    assert info.value.response.headers["x-should-retry"] == "false"


def test_cancel_of_an_unknown_response_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.responses.cancel("resp_nope")


@pytest.fixture(scope="module")
def idle_api(
    postgres_admin_url: str, make_settings: Callable[..., Settings]
) -> Iterator[tuple[str, str]]:
    """An API on a database no worker serves: background responses stay queued."""
    with migrated_scratch_database(postgres_admin_url) as url:
        with running_api(make_settings(database_url=url)) as api:
            yield api, url


def test_cancel_queued_cancels_its_job(idle_api: tuple[str, str]) -> None:
    api, database_url = idle_api
    with sdk_client(api) as sdk:
        queued = sdk.responses.create(model="demo", input="never picked up", background=True)
        assert queued.status == "queued"

        cancelled = sdk.responses.cancel(queued.id)
        assert cancelled.status == "cancelled"
        assert sdk.responses.cancel(queued.id).status == "cancelled"
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT j.status FROM procrastinate_jobs j JOIN responses r ON r.job_id = j.id"
            " WHERE r.id = %s",
            (queued.id,),
        ).fetchone()
    assert row == ("cancelled",)


@pytest.mark.usefixtures("worker")
def test_delete_removes_the_response_its_steps_and_events(
    client: openai.OpenAI, db: psycopg.Connection[dict[str, Any]]
) -> None:
    with client.responses.create(
        model="demo", input="delete me", background=True, stream=True
    ) as stream:
        events = list(stream)  # read to the end: the response has finished
    response_id = events[0].response.id

    deleted = client.responses.with_raw_response.delete(response_id).http_response.json()
    assert deleted == {"id": response_id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response_id)
    for table in ("response_steps", "response_event_batches"):
        count = db.execute(
            f"SELECT count(*) AS n FROM {table} WHERE response_id = %s", (response_id,)
        ).fetchone()
        assert count == {"n": 0}
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(response_id)


@pytest.mark.usefixtures("worker")
def test_delete_of_a_running_response_stops_it_first(
    client: openai.OpenAI, upstream_url: str
) -> None:
    response_id = running_slowly(client, upstream_url, "delete-running")
    client.responses.delete(response_id)
    assert stream_end(upstream_url, "delete-running") == "abandoned"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response_id)


def test_previous_response_must_have_ended(idle_api: tuple[str, str]) -> None:
    api, _ = idle_api
    with sdk_client(api) as sdk:
        queued = sdk.responses.create(model="demo", input="still queued", background=True)
        with pytest.raises(openai.BadRequestError) as info:
            sdk.responses.create(model="demo", input="next", previous_response_id=queued.id)
    assert info.value.body["param"] == "previous_response_id"  # type: ignore[index]
    assert info.value.body["code"] == "previous_response_not_finished"  # type: ignore[index]
