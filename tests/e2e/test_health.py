"""Liveness and readiness: /healthz (and its old name /health) answers without the database;
/readyz answers 200 only while the database answers in time and its migrations are current,
and 503 with the reason otherwise, flipping back by itself when the database returns."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest

from app.config import Settings
from app.store.migrate import migration_names
from tests.support.crashable_postgres import Postgres, crashable_postgres
from tests.support.database import migrated_scratch_database
from tests.support.scrape import scrape
from tests.support.servers import running_api
from tests.support.waiting import wait_for

PROBE_TIMEOUT_S = 1.0


def readiness(api_url: str) -> httpx.Response:
    return httpx.get(f"{api_url}/readyz", timeout=30)


@pytest.mark.parametrize("path", ["/healthz", "/health"])
def test_liveness_answers_ok(api_url: str, path: str) -> None:
    reply = httpx.get(f"{api_url}{path}", timeout=30)
    assert reply.status_code == 200
    assert reply.json() == {"status": "ok"}


def test_ready_on_a_migrated_database(api_url: str) -> None:
    reply = readiness(api_url)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"status": "ready"}


@pytest.fixture
def scratch_url(postgres_admin_url: str) -> Iterator[str]:
    with migrated_scratch_database(postgres_admin_url) as url:
        yield url


def test_not_ready_while_a_migration_is_missing(
    scratch_url: str, make_settings: Callable[..., Settings]
) -> None:
    last = migration_names()[-1]
    with running_api(make_settings(database_url=scratch_url)) as api_url:
        assert readiness(api_url).status_code == 200
        with psycopg.connect(scratch_url, autocommit=True) as conn:
            conn.execute("DELETE FROM ferry_migrations WHERE name = %s", (last,))
            reply = readiness(api_url)
            assert reply.status_code == 503, reply.text
            assert reply.json()["status"] == "not_ready"
            assert reply.json()["reason"] == "migrations_pending"
            assert last in reply.json()["message"]
            conn.execute("INSERT INTO ferry_migrations (name) VALUES (%s)", (last,))
        assert readiness(api_url).status_code == 200


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    with crashable_postgres() as server:
        yield server


def test_readiness_flips_when_the_database_goes_away_and_back(
    postgres: Postgres, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(
        database_url=postgres.url, db_probe_timeout_s=PROBE_TIMEOUT_S, db_pool_timeout_s=2
    )
    with running_api(settings) as api_url:
        assert readiness(api_url).status_code == 200
        before = scrape(api_url)
        assert before.has("ferry_queue_depth")

        postgres.crash()
        reply = readiness(api_url)
        assert reply.status_code == 503, reply.text
        assert reply.json()["reason"] == "database_unavailable"
        assert reply.elapsed.total_seconds() < PROBE_TIMEOUT_S + 2, "readiness must not hang"
        # Liveness does not touch the database, and the metrics scrape still answers,
        # without the live queue gauges and counting the failed read.
        assert httpx.get(f"{api_url}/healthz", timeout=30).status_code == 200
        during = scrape(api_url)
        assert not during.has("ferry_queue_depth")
        errors = "ferry_scrape_errors_total"
        assert during.value(errors, source="database") > before.value(errors, source="database")

        postgres.start()
        ready: Any = wait_for(
            lambda: readiness(api_url).status_code == 200,
            timeout_s=60,
            what="readiness after Postgres restarted",
        )
        assert ready
        assert scrape(api_url).has("ferry_queue_depth")
