"""`store: false`: the creator gets its response, and nothing else ever does. Once it has
ended, GET, input_items, cancel and DELETE are 404 and `previous_response_id` naming it is
a 400; its input, output, steps and events are gone from the database, in the transaction
that ended it; what is kept is what idempotent retries and accounting need."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import psycopg
import pytest

from tests.support.sse import stream_events
from tests.support.waiting import wait_for

Db = psycopg.Connection[dict[str, Any]]
KEPT_COLUMNS = "status, request, output, usage, error, model, owner, completed_at"


def what_is_kept(db: Db, response_id: str) -> dict[str, Any]:
    """The row of a response, and how many steps and events it still has."""
    row = db.execute(
        f"SELECT {KEPT_COLUMNS},"
        " (SELECT count(*) FROM response_steps WHERE response_id = r.id) AS steps,"
        " (SELECT count(*) FROM response_event_batches WHERE response_id = r.id) AS events"
        " FROM responses r WHERE id = %s",
        (response_id,),
    ).fetchone()
    assert row is not None
    return row


def assert_forgotten(db: Db, response_id: str, status: str) -> None:
    kept = what_is_kept(db, response_id)
    assert kept["status"] == status
    assert kept["request"] == {"store": False}  # no input, instructions, tools or metadata
    assert kept["output"] is None
    assert (kept["steps"], kept["events"]) == (0, 0)
    assert kept["model"] == "demo"
    assert kept["completed_at"] is not None


def assert_not_retrievable(client: openai.OpenAI, response_id: str) -> None:
    calls: list[Callable[[], object]] = [
        lambda: client.responses.retrieve(response_id),
        lambda: client.responses.input_items.list(response_id),
        lambda: client.responses.cancel(response_id),
        lambda: client.responses.delete(response_id),
    ]
    for call in calls:
        with pytest.raises(openai.NotFoundError) as info:
            call()
        assert info.value.body["message"] == f"Response with id '{response_id}' not found."  # type: ignore[index]


def test_a_blocking_response_answers_once_and_is_forgotten(client: openai.OpenAI, db: Db) -> None:
    text = 'secret plans [[call:lookup_weather {"city": "Oslo"}]]'
    response = client.responses.create(
        model="demo",
        input=text,
        instructions="Be brief.",
        metadata={"project": "x"},
        store=False,
    )

    assert response.status == "completed"
    assert response.store is False
    assert response.instructions == "Be brief."
    assert [item.type for item in response.output] == [
        "function_call",
        "function_call_output",
        "message",
    ]
    assert response.usage is not None
    assert_forgotten(db, response.id, "completed")
    kept = what_is_kept(db, response.id)
    assert kept["usage"]["total_tokens"] == response.usage.total_tokens
    assert "secret plans" not in str(kept)
    assert_not_retrievable(client, response.id)


def test_a_streamed_response_is_forgotten_once_it_ends(api_url: str, db: Db) -> None:
    body = {"model": "demo", "input": "stream my secret", "stream": True, "store": False}
    events = stream_events(api_url, body)

    assert events[-1]["type"] == "response.completed"
    final = events[-1]["response"]
    assert final["store"] is False
    assert final["output"][0]["content"][0]["text"] == "Hello! You said: stream my secret"
    assert_forgotten(db, final["id"], "completed")
    assert httpx.get(f"{api_url}/v1/responses/{final['id']}", timeout=30).status_code == 404


def test_a_failed_response_keeps_its_error(client: openai.OpenAI, db: Db) -> None:
    response = client.responses.create(model="demo", input="x [[mid-error]]", store=False)

    assert response.status == "failed"
    assert_forgotten(db, response.id, "failed")
    assert what_is_kept(db, response.id)["error"] == {
        "code": "upstream_error",
        "message": "upstream error mid-stream: demo upstream failed mid-stream",
    }


def test_it_cannot_be_continued(client: openai.OpenAI) -> None:
    unstored = client.responses.create(model="demo", input="forget me", store=False)

    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="demo", input="and then?", previous_response_id=unstored.id)
    assert info.value.body == {  # as OpenAI answers
        "message": f"Previous response with id '{unstored.id}' not found.",
        "type": "invalid_request_error",
        "param": "previous_response_id",
        "code": "previous_response_not_found",
    }


def test_a_response_stored_can_continue_into_one_that_is_not(client: openai.OpenAI) -> None:
    stored = client.responses.create(model="demo", input="remember this")
    unstored = client.responses.create(
        model="demo", input="and this", previous_response_id=stored.id, store=False
    )

    assert unstored.status == "completed"
    assert client.responses.retrieve(stored.id).status == "completed"


def test_an_idempotent_retry_after_the_end_is_a_409_naming_it(client: openai.OpenAI) -> None:
    key = {"Idempotency-Key": f"unstored-{secrets.token_hex(6)}"}
    first = client.responses.create(model="demo", input="once", store=False, extra_headers=key)

    with pytest.raises(openai.ConflictError) as info:
        client.responses.create(model="demo", input="once", store=False, extra_headers=key)

    assert info.value.response.headers["x-response-id"] == first.id
    assert info.value.response.headers["x-should-retry"] == "false"
    assert info.value.body["code"] == "response_not_stored"  # type: ignore[index]
    assert first.id in info.value.body["message"]  # type: ignore[index]


def test_a_twin_of_a_running_response_waits_for_its_end_then_gets_the_409(
    api_url: str, db: Db
) -> None:
    key = {"Idempotency-Key": f"twin-{secrets.token_hex(6)}"}
    body = {"model": "demo", "input": "slowly " + "w " * 8 + "[[delay:100]]", "store": False}
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(
            httpx.post, f"{api_url}/v1/responses", json=body, headers=key, timeout=30
        )
        claimed = wait_for(
            lambda: db.execute(
                "SELECT response_id FROM idempotency_keys WHERE key = %s",
                (key["Idempotency-Key"],),
            ).fetchone(),
            timeout_s=15,
            what="the first request to claim its key",
        )
        twin = httpx.post(f"{api_url}/v1/responses", json=body, headers=key, timeout=30)
        answered = first.result(timeout=30)

    assert answered.status_code == 200
    assert answered.json()["status"] == "completed"
    assert twin.status_code == 409
    assert twin.headers["x-response-id"] == claimed["response_id"] == answered.json()["id"]


def test_a_flex_response_not_stored_runs_inline(client: openai.OpenAI, db: Db) -> None:
    # Flex is handed back through the database, which keeps nothing of this response.
    response = client.responses.create(
        model="demo", input="no hurry", service_tier="flex", store=False
    )

    assert response.status == "completed"
    assert response.output_text == "Hello! You said: no hurry"
    assert response.service_tier == "default"
    assert_forgotten(db, response.id, "completed")
