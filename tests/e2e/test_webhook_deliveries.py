"""Webhook deliveries against a real receiver, a real worker and Postgres: the ending of a
response signed per Standard Webhooks so that the SDK's `client.webhooks.unwrap` verifies it
and parses it into its `Response*WebhookEvent` type; retried with the same `webhook-id`
until acknowledged, each attempt recorded; test events; secret rotation."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from typing import Any

import openai
import psycopg
import pytest
from openai import InvalidWebhookSignatureError
from openai.types.webhooks import (
    ResponseCancelledWebhookEvent,
    ResponseCompletedWebhookEvent,
    ResponseFailedWebhookEvent,
    ResponseIncompleteWebhookEvent,
)
from psycopg.rows import dict_row

from app.config import Settings
from app.engine.runtime import Role, open_runtime
from app.engine.worker_side import WorkerSide
from app.store.webhooks import event_payload
from tests.e2e.conftest import WEBHOOK_API_KEYS
from tests.support.clients import sdk_client
from tests.support.database import migrated_scratch_database
from tests.support.processes import running_worker
from tests.support.servers import running_api
from tests.support.waiting import wait_for
from tests.support.webhook_receiver import Received, WebhookReceiver

Db = psycopg.Connection[dict[str, Any]]

LONG_INPUT = " ".join(f"word{i}" for i in range(40))
SLOW_INPUT = " ".join(f"w{i}" for i in range(40)) + " [[delay:150]]"


def deliveries(db: Db, endpoint_id: str) -> list[dict[str, Any]]:
    return db.execute(
        "SELECT * FROM webhook_deliveries WHERE endpoint_id = %s ORDER BY created_at",
        (endpoint_id,),
    ).fetchall()


def attempts(db: Db, delivery_id: str) -> list[dict[str, Any]]:
    return db.execute(
        "SELECT * FROM webhook_delivery_attempts WHERE delivery_id = %s ORDER BY number",
        (delivery_id,),
    ).fetchall()


def jobs_waiting(db: Db, delivery_id: str) -> int:
    row = db.execute(
        "SELECT count(*) AS n FROM procrastinate_jobs"
        " WHERE task_name = 'ferry:deliver_webhook' AND args ->> 'delivery_id' = %s"
        "   AND status IN ('todo', 'doing')",
        (delivery_id,),
    ).fetchone()
    assert row is not None
    return int(row["n"])


def ended(client: openai.OpenAI, response_id: str) -> str | None:
    status = client.responses.retrieve(response_id).status
    return status if status in ("completed", "failed", "incomplete", "cancelled") else None


def unwrapped(client: openai.OpenAI, received: Received, secret: str) -> Any:
    return client.webhooks.unwrap(received.body, received.headers, secret=secret)


@pytest.mark.usefixtures("worker")
def test_a_receiver_that_fails_twice_gets_one_verified_delivery(
    webhook_client: openai.OpenAI, webhook_receiver: WebhookReceiver, db: Db
) -> None:
    webhook_receiver.fail_first("fails-twice", 2, status=503)
    endpoint = webhook_client.webhooks.create(
        name="fails twice",
        url=webhook_receiver.url("fails-twice"),
        event_types=["response.completed"],
    )
    queued = webhook_client.responses.create(model="demo", input="announce me", background=True)
    assert queued.status == "queued"  # the create did not wait for any delivery

    [delivery] = wait_for(
        lambda: [d for d in deliveries(db, endpoint.id) if d["status"] == "delivered"],
        timeout_s=30,
        what="the delivery to be acknowledged",
    )
    received = webhook_receiver.received("fails-twice")
    assert [r.answered for r in received] == [503, 503, 200]
    recorded = attempts(db, delivery["id"])
    assert [(a["number"], a["status_code"]) for a in recorded] == [(1, 503), (2, 503), (3, 200)]
    assert all(a["latency_ms"] > 0 for a in recorded)
    assert [a["error"] for a in recorded] == [
        "the receiver answered 503",
        "the receiver answered 503",
        None,
    ]
    assert (delivery["attempts"], delivery["response_id"]) == (3, queued.id)

    # Every attempt is the same message: one webhook-id, one body, signed anew each time.
    assert {r.headers["webhook-id"] for r in received} == {delivery["id"]}
    assert {r.body for r in received} == {delivery["payload"].encode()}
    event = unwrapped(webhook_client, received[-1], endpoint.signing_secret)
    assert isinstance(event, ResponseCompletedWebhookEvent)
    assert (event.id, event.type, event.object) == (
        delivery["event_id"],
        "response.completed",
        "event",
    )
    assert event.data.id == queued.id
    final = webhook_client.responses.retrieve(queued.id)
    assert final.status == "completed"
    assert event.created_at == final.completed_at
    # Acknowledged: nothing is left to send it again.
    assert jobs_waiting(db, delivery["id"]) == 0
    assert len(webhook_receiver.acknowledged("fails-twice")) == 1


@pytest.mark.usefixtures("worker")
def test_each_ending_goes_as_its_event_type_to_the_endpoints_subscribed_to_it(
    webhook_client: openai.OpenAI, webhook_receiver: WebhookReceiver, db: Db
) -> None:
    kinds = {
        "response.completed": ResponseCompletedWebhookEvent,
        "response.failed": ResponseFailedWebhookEvent,
        "response.incomplete": ResponseIncompleteWebhookEvent,
        "response.cancelled": ResponseCancelledWebhookEvent,
    }
    endpoints = {
        event_type: webhook_client.webhooks.create(
            name=event_type,
            url=webhook_receiver.url(f"each-{event_type}"),
            event_types=[event_type],
        )
        for event_type in kinds
    }
    create = webhook_client.responses.create
    responses = {
        "response.completed": create(model="demo", input="fine", background=True),
        "response.failed": create(model="demo", input="no [[status:400]]", background=True),
        "response.incomplete": create(
            model="demo", input=LONG_INPUT, max_output_tokens=16, background=True
        ),
        "response.cancelled": create(model="demo", input=SLOW_INPUT, background=True),
    }
    webhook_client.responses.cancel(responses["response.cancelled"].id)

    for event_type, response in responses.items():
        status = wait_for(lambda r=response: ended(webhook_client, r.id), timeout_s=30)
        assert f"response.{status}" == event_type
        # The deliveries were made in the transaction that ended the response: they are
        # there as soon as the ending is, for the subscribers of its event type only.
        for subscribed, endpoint in endpoints.items():
            made = [d for d in deliveries(db, endpoint.id) if d["response_id"] == response.id]
            assert len(made) == (1 if subscribed == event_type else 0)

    for event_type, endpoint in endpoints.items():
        [received] = wait_for(
            lambda e=event_type: webhook_receiver.acknowledged(f"each-{e}"), timeout_s=30
        )
        event = unwrapped(webhook_client, received, endpoint.signing_secret)
        assert isinstance(event, kinds[event_type])
        assert event.data.id == responses[event_type].id


@pytest.mark.usefixtures("worker")
def test_inline_responses_are_delivered_only_with_webhook_all_responses(
    webhook_api_url: str,
    webhook_key: str,
    webhook_receiver: WebhookReceiver,
    make_settings: Callable[..., Settings],
    db: Db,
) -> None:
    with sdk_client(webhook_api_url, api_key=webhook_key) as client:
        endpoint = client.webhooks.create(
            name="inline", url=webhook_receiver.url("inline"), event_types=["response.completed"]
        )
        blocking = client.responses.create(model="demo", input="not announced")
        assert blocking.status == "completed"
        assert deliveries(db, endpoint.id) == []

    all_responses = make_settings(api_keys=",".join(WEBHOOK_API_KEYS), webhook_all_responses=True)
    with running_api(all_responses) as url, sdk_client(url, api_key=webhook_key) as client:
        announced = client.responses.create(model="demo", input="announced")
        with client.responses.create(model="demo", input="streamed", stream=True) as stream:
            streamed_id = next(e.response.id for e in stream if e.type == "response.completed")
    assert {d["response_id"] for d in deliveries(db, endpoint.id)} == {announced.id, streamed_id}
    received = wait_for(
        lambda: (got := webhook_receiver.acknowledged("inline")) and len(got) == 2 and got,
        timeout_s=30,
    )
    events = [unwrapped(client, r, endpoint.signing_secret) for r in received]
    assert {e.data.id for e in events} == {announced.id, streamed_id}


def test_a_test_event_is_sent_at_once_and_answers_with_the_receivers_status(
    webhook_client: openai.OpenAI, webhook_receiver: WebhookReceiver, db: Db
) -> None:
    endpoint = webhook_client.webhooks.create(
        name="tested", url=webhook_receiver.url("tested"), event_types=["response.completed"]
    )
    result = webhook_client.webhooks.test(endpoint.id, event_type="response.incomplete")
    assert (result.object, result.success, result.status_code) == (
        "webhook_endpoint.test",
        True,
        200,
    )
    assert (result.webhook_endpoint_id, result.event_type) == (endpoint.id, "response.incomplete")
    [received] = webhook_receiver.received("tested")
    event = unwrapped(webhook_client, received, endpoint.signing_secret)
    assert isinstance(event, ResponseIncompleteWebhookEvent)
    assert event.data.id.startswith("resp_")

    # A failing receiver's status is the answer; a test event is not tried again.
    webhook_receiver.fail_first("tested", 1, status=500)
    failed = webhook_client.webhooks.test(endpoint.id, event_type="response.failed")
    assert (failed.success, failed.status_code) == (True, 500)
    tests = deliveries(db, endpoint.id)
    assert [(d["event_type"], d["status"], d["attempts"]) for d in tests] == [
        ("response.incomplete", "delivered", 1),
        ("response.failed", "failed", 1),
    ]
    assert jobs_waiting(db, tests[1]["id"]) == 0


def test_rotating_the_secret_changes_the_signature(
    webhook_client: openai.OpenAI, webhook_receiver: WebhookReceiver
) -> None:
    hook = "rotated"
    endpoint = webhook_client.webhooks.create(
        name=hook, url=webhook_receiver.url(hook), event_types=["response.completed"]
    )
    old = endpoint.signing_secret
    webhook_client.webhooks.test(endpoint.id, event_type="response.completed")

    rotated = webhook_client.webhooks.rotate_secret(endpoint.id)
    new = rotated.signing_secret
    assert new != old and new.startswith("whsec_")
    assert rotated.signing_secret_hint is not None and rotated.signing_secret_hint.endswith(
        new[-4:]
    )
    assert (
        "signing_secret"
        not in webhook_client.webhooks.with_raw_response.retrieve(endpoint.id).http_response.json()
    )
    webhook_client.webhooks.test(endpoint.id, event_type="response.completed")

    before, after = webhook_receiver.received(hook)
    assert before.headers["webhook-signature"] != after.headers["webhook-signature"]
    unwrapped(webhook_client, before, old)
    unwrapped(webhook_client, after, new)
    with pytest.raises(InvalidWebhookSignatureError):
        webhook_client.webhooks.verify_signature(after.body, after.headers, secret=old)

    # Kept for 24 hours on request, the old secret signs too: both verify.
    kept = webhook_client.webhooks.rotate_secret(
        endpoint.id, keep_old_secret_active_for_24_hours=True
    )
    webhook_client.webhooks.test(endpoint.id, event_type="response.completed")
    last = webhook_receiver.received(hook)[-1]
    assert len(last.headers["webhook-signature"].split()) == 2
    unwrapped(webhook_client, last, kept.signing_secret)
    unwrapped(webhook_client, last, new)
    with pytest.raises(InvalidWebhookSignatureError):
        webhook_client.webhooks.verify_signature(last.body, last.headers, secret=old)


def test_a_delivery_is_given_up_once_its_retry_window_has_passed(
    webhook_client: openai.OpenAI,
    webhook_receiver: WebhookReceiver,
    make_settings: Callable[..., Settings],
    db: Db,
) -> None:
    webhook_receiver.fail_first("given-up", 1, status=502)
    endpoint = webhook_client.webhooks.create(
        name="given up", url=webhook_receiver.url("given-up"), event_types=["response.failed"]
    )
    settings = make_settings(webhook_retry_window_s=0.001)

    async def attempt_once() -> str:
        async with open_runtime(settings, role=Role.WORKER) as runtime:
            payload = event_payload(
                "evt_given_up", "response.failed", db_now(db), {"id": "resp_given_up"}
            )
            delivery_id = await runtime.webhooks.insert_test_delivery(
                endpoint.id, "evt_given_up", "response.failed", payload
            )
            await WorkerSide(runtime).deliver_webhook(delivery_id)
            return delivery_id

    delivery_id = asyncio.run(attempt_once())
    [delivery] = deliveries(db, endpoint.id)
    assert (delivery["id"], delivery["status"], delivery["attempts"]) == (delivery_id, "failed", 1)
    assert delivery["ended_at"] is not None
    assert [a["status_code"] for a in attempts(db, delivery_id)] == [502]
    assert jobs_waiting(db, delivery_id) == 0
    assert len(webhook_receiver.received("given-up")) == 1


def db_now(db: Db) -> Any:
    row = db.execute("SELECT now() AS now").fetchone()
    assert row is not None
    return row["now"]


def test_a_delivery_cut_off_by_its_workers_death_is_sent_again_with_the_same_webhook_id(
    postgres_admin_url: str,
    service_env: dict[str, str],
    make_settings: Callable[..., Settings],
    webhook_receiver: WebhookReceiver,
) -> None:
    hook = "cut-off"
    webhook_receiver.hold_first(hook)  # the first attempt gets no answer
    with migrated_scratch_database(postgres_admin_url) as database_url:
        env = {
            **service_env,
            "DATABASE_URL": database_url,
            "WORKER_HEARTBEAT_S": "0.5",
            "STALL_THRESHOLD_S": "2",
            "RECOVERY_INTERVAL_S": "1",
        }
        with (
            running_api(make_settings(database_url=database_url)) as api_url,
            sdk_client(api_url) as client,
            psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as db,
        ):
            endpoint = client.webhooks.create(
                name=hook, url=webhook_receiver.url(hook), event_types=["response.completed"]
            )
            with running_worker(env, concurrency=2) as doomed:
                queued = client.responses.create(model="demo", input="cut off", background=True)
                wait_for(lambda: webhook_receiver.received(hook), what="the first attempt")
                os.kill(doomed.pid, signal.SIGKILL)
                doomed.wait_exit(timeout=30)
            with running_worker(env, concurrency=2):
                [acknowledged] = wait_for(lambda: webhook_receiver.acknowledged(hook), timeout_s=30)
                # The answer is recorded after the receiver sent it: wait for the record
                # before this worker is stopped.
                wait_for(
                    lambda: [d["status"] for d in deliveries(db, endpoint.id)] == ["delivered"],
                    what="the delivery to be recorded",
                )
            webhook_receiver.release(hook)

            [delivery] = deliveries(db, endpoint.id)
            # The attempt cut off left no record: its worker died before it could write one.
            assert [a["status_code"] for a in attempts(db, delivery["id"])] == [200]
            assert delivery["status"] == "delivered"
    first, second = webhook_receiver.received(hook)
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery["id"]
    assert first.body == second.body
    event = unwrapped(client, acknowledged, endpoint.signing_secret)
    assert isinstance(event, ResponseCompletedWebhookEvent)
    assert event.data.id == queued.id
