"""Prometheus metrics at /metrics, scraped and parsed with prometheus_client's own parser:
counters and histograms move with real requests through a real API, gauges follow open
streams and queued jobs, a worker serves the same on its own port, and
PROMETHEUS_MULTIPROC_DIR makes a process keep them in files that a scrape adds up."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import psycopg
import pytest

from app.config import Settings
from tests.support.clients import sdk_client
from tests.support.database import migrated_scratch_database
from tests.support.processes import (
    command_env,
    free_port,
    running_api_process,
    running_worker,
)
from tests.support.scrape import Scrape, scrape
from tests.support.servers import running_api
from tests.support.settings import as_environment
from tests.support.sse import iter_frames
from tests.support.waiting import wait_for

PROBE = "metrics-probe"  # a model only this file uses, named in METRICS_MODELS
CREATED = "ferry_responses_created_total"
ENDED = "ferry_responses_ended_total"
UPSTREAM = "ferry_upstream_requests_total"


@pytest.fixture(scope="module")
def api(make_settings: Callable[..., Settings]) -> Iterator[str]:
    with running_api(make_settings(metrics_models=PROBE)) as url:
        yield url


@pytest.fixture(scope="module")
def sdk(api: str) -> Iterator[openai.OpenAI]:
    with sdk_client(api, timeout=30) as client:
        yield client


def delta(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


def create(api: str, text: str, **params: Any) -> httpx.Response:
    body = {"model": PROBE, "input": text, **params}
    return httpx.post(f"{api}/v1/responses", json=body, timeout=30)


def test_responses_are_counted_by_mode_model_and_status(api: str, sdk: openai.OpenAI) -> None:
    before = scrape(api)
    blocking = sdk.responses.create(model=PROBE, input="count me")
    with sdk.responses.create(model=PROBE, input="stream me", stream=True) as stream:
        streamed = [event.type for event in stream]
    unlisted = sdk.responses.create(model="a-model-nobody-listed", input="hi")
    after = scrape(api)

    assert blocking.status == "completed" and streamed[-1] == "response.completed"
    assert unlisted.status == "completed"
    for mode in ("blocking", "stream"):
        assert delta(before, after, CREATED, mode=mode, model=PROBE) == 1
        assert delta(before, after, ENDED, mode=mode, model=PROBE, status="completed") == 1
        histogram = "ferry_response_duration_seconds_count"
        assert delta(before, after, histogram, mode=mode, model=PROBE, status="completed") == 1
        ttft = "ferry_time_to_first_token_seconds_count"
        assert delta(before, after, ttft, mode=mode, model=PROBE) == 1
    # A model not in METRICS_MODELS is `other`: its name never becomes a label.
    assert delta(before, after, CREATED, mode="blocking", model="other") == 1
    assert not any("a-model-nobody-listed" in str(labels) for _, labels in after.samples)
    assert delta(before, after, UPSTREAM, outcome="ok") == 3
    assert delta(before, after, "ferry_upstream_latency_seconds_count") == 3


def test_upstream_requests_are_counted_by_outcome(api: str) -> None:
    before = scrape(api)
    # Three tries (UPSTREAM_MAX_ATTEMPTS): two retried, the last a 5xx; the response fails.
    assert create(api, "[[status:503]]").json()["status"] == "failed"
    # A 4xx is not retried: the blocking create gets it as its own error.
    assert create(api, "[[status:400]]").status_code == 400
    # Ended without a finish reason, and broke off with an error: both cut.
    assert create(api, "one two three four [[cut]]").json()["status"] == "failed"
    assert create(api, "one two three four [[mid-error]]").json()["status"] == "failed"
    after = scrape(api)

    assert delta(before, after, UPSTREAM, outcome="retried") == 2
    assert delta(before, after, UPSTREAM, outcome="5xx") == 1
    assert delta(before, after, UPSTREAM, outcome="4xx") == 1
    assert delta(before, after, UPSTREAM, outcome="cut") == 2
    assert delta(before, after, UPSTREAM, outcome="ok") == 0
    assert delta(before, after, ENDED, mode="blocking", model=PROBE, status="failed") == 4


def test_tool_calls_are_counted_by_tool_and_outcome(api: str) -> None:
    tool_calls = "ferry_tool_calls_total"
    before = scrape(api)
    weather = create(api, 'Weather? [[call:lookup_weather {"city": "Oslo"}]]')
    broken = create(api, "Try it [[call:broken_tool]]")
    capped = create(api, "[[call:current_time]] [[call:lookup_weather]]", max_tool_calls=1)
    after = scrape(api)

    assert [r.json()["status"] for r in (weather, broken)] == ["completed", "completed"]
    assert capped.json()["status"] == "incomplete"
    assert delta(before, after, tool_calls, tool="lookup_weather", outcome="ok") == 1
    assert delta(before, after, tool_calls, tool="broken_tool", outcome="error") == 1
    assert delta(before, after, tool_calls, tool="current_time", outcome="ok") == 1
    assert delta(before, after, tool_calls, tool="lookup_weather", outcome="skipped") == 1


def test_open_streams_are_gauged_while_they_are_open(api: str) -> None:
    inline, tails = "ferry_inline_streams_active", "ferry_background_tails_active"
    batches = "ferry_event_log_batches_written_total"
    before = scrape(api)
    with contextlib.ExitStack() as stack:
        slow = stack.enter_context(
            httpx.stream(
                "POST",
                f"{api}/v1/responses",
                json={"model": PROBE, "input": "slow [[delay:500]]", "stream": True},
                timeout=30,
            )
        )
        # Kept: a frame iterator that is collected closes the connection under it.
        slow_frames = iter_frames(slow, within_s=30)
        next(slow_frames)
        tailed = stack.enter_context(
            httpx.stream(
                "POST",
                f"{api}/v1/responses",
                json={
                    "model": PROBE,
                    "input": "later [[delay:500]]",
                    "background": True,
                    "stream": True,
                },
                timeout=30,
            )
        )
        tailed_frames = iter_frames(tailed, within_s=30)
        _, created = next(tailed_frames)
        during = scrape(api)
        assert during.value(inline) == before.value(inline) + 1
        assert during.value(tails) == before.value(tails) + 1
        # Its opening events were logged by this process as it accepted it.
        assert delta(before, during, batches) >= 1
    # Both clients left; the background response needs no listener, so cancel it.
    cancelled = httpx.post(f"{api}/v1/responses/{created['response']['id']}/cancel", timeout=30)
    assert cancelled.status_code == 200

    def settled() -> Scrape | None:
        now = scrape(api)
        gone = now.value(inline) == before.value(inline) and now.value(tails) == before.value(tails)
        return now if gone else None

    wait_for(settled, timeout_s=15, what="the stream gauges to go back down")


@pytest.fixture
def scratch_url(postgres_admin_url: str) -> Iterator[str]:
    with migrated_scratch_database(postgres_admin_url) as url:
        yield url


def test_queues_and_the_pool_are_read_at_scrape_time(
    scratch_url: str, make_settings: Callable[..., Settings]
) -> None:
    # No worker runs on this database: what is deferred stays queued.
    with running_api(make_settings(database_url=scratch_url, db_pool_max_size=7)) as url:
        empty = scrape(url)
        assert empty.value("ferry_queue_depth", queue="default") == 0
        assert empty.value("ferry_queue_depth", queue="flex") == 0
        assert empty.value("ferry_queue_oldest_age_seconds", queue="default") == 0
        for tier in ("auto", "auto", "flex"):
            reply = create(url, "wait", background=True, service_tier=tier)
            assert reply.json()["status"] == "queued"

        def waited() -> Scrape | None:
            now = scrape(url)
            return now if now.value("ferry_queue_oldest_age_seconds", queue="flex") > 0 else None

        now = wait_for(waited, timeout_s=15, what="the queued jobs to age")
        assert now.value("ferry_queue_depth", queue="default") == 2
        assert now.value("ferry_queue_depth", queue="flex") == 1
        assert now.value("ferry_queue_oldest_age_seconds", queue="default") > 0
        assert now.value("ferry_db_pool_max") == 7
        in_use = now.value("ferry_db_pool_connections", state="in_use")
        assert in_use + now.value("ferry_db_pool_connections", state="idle") >= 1
        assert now.has("ferry_db_pool_waiting")
        assert now.value("ferry_scrape_errors_total", source="database") == empty.value(
            "ferry_scrape_errors_total", source="database"
        )


def test_a_worker_serves_its_metrics_on_its_own_port(
    scratch_url: str,
    suite_settings: dict[str, Any],
    make_settings: Callable[..., Settings],
) -> None:
    port = free_port()
    env = command_env(
        **as_environment({**suite_settings, "database_url": scratch_url}),
        METRICS_MODELS=PROBE,
        WORKER_METRICS_PORT=str(port),
        RECOVERY_INTERVAL_S="1",
        EVENT_FLUSH_INTERVAL_S="0.02",
    )
    with running_api(make_settings(database_url=scratch_url)) as url:
        # An orphan: running, yet its job ended. The worker's recovery sweep queues it again.
        orphan = create(url, "orphaned", background=True).json()["id"]
        with psycopg.connect(scratch_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE procrastinate_jobs SET status = 'failed' "
                "WHERE id = (SELECT job_id FROM responses WHERE id = %s)",
                (orphan,),
            )
            conn.execute("UPDATE responses SET status = 'in_progress' WHERE id = %s", (orphan,))
        body = {"model": PROBE, "input": "logged", "background": True, "stream": True}
        with httpx.stream("POST", f"{url}/v1/responses", json=body, timeout=30) as streamed:
            assert streamed.status_code == 200  # and leave: the work goes on without us
        with running_worker(env, concurrency=2) as worker:
            assert '"metrics served"' in worker.output()  # before it said it was ready
            worker_url = f"http://127.0.0.1:{port}"

            def both_completed() -> Scrape | None:
                now = scrape(worker_url)
                done = now.value(ENDED, mode="background", model=PROBE, status="completed")
                logged = now.value(ENDED, mode="background_stream", model=PROBE, status="completed")
                return now if done == 1 and logged == 1 else None

            now = wait_for(both_completed, timeout_s=60, what="the worker to finish both")
            assert now.value("ferry_recoveries_total", kind="orphan_requeued") == 1
            assert now.value("ferry_recoveries_total", kind="stalled_retried") == 0
            assert now.value(UPSTREAM, outcome="ok") == 2
            assert now.value("ferry_event_log_batches_written_total") >= 1
            ttft = "ferry_time_to_first_token_seconds_count"
            assert now.value(ttft, mode="background", model=PROBE) == 1
            assert now.has("ferry_queue_depth") and now.has("ferry_db_pool_max")
            assert now.has("process_cpu_seconds_total")
        status = httpx.get(f"{url}/v1/responses/{orphan}", timeout=30).json()["status"]
        assert status == "completed"


def test_a_multiprocess_directory_keeps_the_values_in_files(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**service_env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "METRICS_MODELS": PROBE}
    with running_api_process(env, "--no-migrate") as (_, url):
        reply = create(url, "kept in a file")
        assert reply.json()["status"] == "completed"
        now = scrape(url)
        assert now.value(CREATED, mode="blocking", model=PROBE) == 1
        assert now.value(ENDED, mode="blocking", model=PROBE, status="completed") == 1
        assert now.value("ferry_inline_streams_active") == 0
        # What prometheus_client's multiprocess mode writes: one file per kind and process.
        assert list(tmp_path.glob("counter_*.db"))
        # Process metrics describe one process only, so a multiprocess scrape leaves them out.
        assert not now.has("process_cpu_seconds_total")
        assert json.loads(httpx.get(f"{url}/readyz", timeout=30).text)["status"] == "ready"
