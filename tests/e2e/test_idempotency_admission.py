"""Idempotent create (Idempotency-Key) and admission control (429 before anything is written)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import psycopg
import pytest

from app.config import Settings
from tests.support.clients import sdk_client
from tests.support.database import migrated_scratch_database
from tests.support.servers import running_api


def key() -> dict[str, str]:
    return {"Idempotency-Key": f"idem-{secrets.token_hex(8)}"}


def count(db: psycopg.Connection[dict[str, Any]], sql: str, *params: Any) -> int:
    row = db.execute(sql, params).fetchone()
    assert row is not None
    return int(next(iter(row.values())))


def test_retried_blocking_create_returns_the_same_response(
    client: openai.OpenAI, db: psycopg.Connection[dict[str, Any]]
) -> None:
    headers = key()
    first = client.responses.create(model="demo", input="once only", extra_headers=headers)
    again = client.responses.create(model="demo", input="once only", extra_headers=headers)
    assert again.id == first.id
    assert again.output_text == first.output_text
    assert count(db, "SELECT count(*) FROM idempotency_keys WHERE response_id = %s", first.id) == 1


@pytest.mark.usefixtures("worker")
def test_retried_background_create_makes_one_job(
    client: openai.OpenAI, db: psycopg.Connection[dict[str, Any]]
) -> None:
    headers = key()
    first = client.responses.create(
        model="demo", input="queue once", background=True, extra_headers=headers
    )
    again = client.responses.create(
        model="demo", input="queue once", background=True, extra_headers=headers
    )
    assert again.id == first.id
    jobs = count(
        db, "SELECT count(*) FROM procrastinate_jobs WHERE args->>'response_id' = %s", first.id
    )
    assert jobs == 1


@pytest.mark.usefixtures("worker")
def test_concurrent_twins_get_one_response(
    api_url: str, db: psycopg.Connection[dict[str, Any]]
) -> None:
    headers = key()
    body = {"model": "demo", "input": "twins", "background": True}

    def post(_: int) -> str:
        reply = httpx.post(f"{api_url}/v1/responses", json=body, headers=headers, timeout=30)
        assert reply.status_code == 200, reply.text
        return str(reply.json()["id"])

    with ThreadPoolExecutor(max_workers=4) as pool:
        ids = set(pool.map(post, range(4)))
    assert len(ids) == 1
    [response_id] = ids
    jobs = count(
        db, "SELECT count(*) FROM procrastinate_jobs WHERE args->>'response_id' = %s", response_id
    )
    assert jobs == 1


def test_same_key_with_another_body_is_409(client: openai.OpenAI) -> None:
    headers = key()
    client.responses.create(model="demo", input="first body", extra_headers=headers)
    with pytest.raises(openai.ConflictError) as info:
        client.responses.create(model="demo", input="second body", extra_headers=headers)
    assert info.value.body["code"] == "idempotency_key_reused"  # type: ignore[index]
    assert info.value.response.headers["x-should-retry"] == "false"


def test_an_expired_key_makes_a_new_response(
    client: openai.OpenAI, db: psycopg.Connection[dict[str, Any]]
) -> None:
    headers = key()
    first = client.responses.create(model="demo", input="expiring", extra_headers=headers)
    db.execute(
        "UPDATE idempotency_keys SET created_at = now() - interval '2 days' WHERE response_id = %s",
        (first.id,),
    )
    again = client.responses.create(model="demo", input="expiring", extra_headers=headers)
    assert again.id != first.id


def test_keys_are_per_api_key(make_settings: Callable[..., Settings]) -> None:
    headers = key()
    with (
        running_api(make_settings(api_keys="key-a,key-b")) as url,
        sdk_client(url, "key-a") as a,
        sdk_client(url, "key-b") as b,
    ):
        from_a = a.responses.create(model="demo", input="shared key", extra_headers=headers)
        from_b = b.responses.create(model="demo", input="shared key", extra_headers=headers)
    assert from_a.id != from_b.id


@pytest.mark.parametrize(
    ("overrides", "params"),
    [
        ({"max_inline_per_process": 0}, {}),
        ({"max_queued_per_key": 0}, {"background": True}),
        ({"max_queued_background": 0}, {"background": True}),
    ],
)
def test_caps_answer_429_and_write_nothing(
    make_settings: Callable[..., Settings],
    db: psycopg.Connection[dict[str, Any]],
    overrides: dict[str, int],
    params: dict[str, Any],
) -> None:
    before = count(db, "SELECT count(*) FROM responses")
    with running_api(make_settings(**overrides)) as url:
        reply = httpx.post(
            f"{url}/v1/responses", json={"model": "demo", "input": "over cap", **params}
        )
    assert reply.status_code == 429
    assert reply.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(reply.headers["retry-after"]) >= 1
    assert count(db, "SELECT count(*) FROM responses") == before


def test_vanished_database_is_503_not_a_hang(
    postgres_admin_url: str, make_settings: Callable[..., Settings]
) -> None:
    with migrated_scratch_database(postgres_admin_url) as url:
        name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
        with running_api(make_settings(database_url=url, db_pool_timeout_s=1)) as api:
            with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            reply = httpx.post(
                f"{api}/v1/responses", json={"model": "demo", "input": "anyone?"}, timeout=15
            )
            # Recreated so the scratch context can drop it as usual.
            with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{name}"')
    assert reply.status_code == 503
    assert reply.json()["error"]["code"] == "database_unavailable"
