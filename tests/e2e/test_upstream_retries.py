"""A model turn's upstream request is retried until its first token, and never after.

End to end: the openai SDK (which must not retry itself) against a Ferry API with short
backoffs, in front of the demo upstream, whose request log counts the tries each prompt took.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator

import openai
import pytest

from app.config import Settings
from tests.fakes.upstream.spy import requests_mentioning
from tests.support.clients import sdk_client
from tests.support.servers import running_api

MAX_ATTEMPTS = 3


@pytest.fixture(scope="module")
def fast_api_url(make_settings: Callable[..., Settings]) -> Iterator[str]:
    """A Ferry API whose retries wait milliseconds, so the tests stay quick."""
    settings = make_settings(
        upstream_backoff_base_s=0.01,
        upstream_backoff_max_s=0.2,
        upstream_max_attempts=MAX_ATTEMPTS,
    )
    with running_api(settings) as url:
        yield url


@pytest.fixture(scope="module")
def sdk(fast_api_url: str) -> Iterator[openai.OpenAI]:
    # The SDK does not retry: any retry observed upstream is Ferry's own.
    with sdk_client(fast_api_url, timeout=30) as client:
        yield client


def prompt(directives: str) -> tuple[str, str]:
    """(input text, marker): a prompt no other test sends, so counters and logs stay apart."""
    marker = secrets.token_hex(8)
    return f"retry {marker} one two three four {directives}", marker


def test_failures_before_the_first_token_are_retried(sdk: openai.OpenAI, upstream_url: str) -> None:
    text, marker = prompt("[[fail-first:2]]")

    response = sdk.responses.create(model="demo", input=text)

    assert response.status == "completed"
    assert response.output_text == f"Hello! You said: retry {marker} one two three four"
    assert len(requests_mentioning(upstream_url, marker)) == 3


def test_giving_up_reports_the_last_error_and_the_attempts(
    sdk: openai.OpenAI, upstream_url: str
) -> None:
    text, marker = prompt("[[fail-first:5]]")

    response = sdk.responses.create(model="demo", input=text)

    assert response.status == "failed"
    assert response.error is not None
    assert response.error.code == "upstream_error"
    assert response.error.message == (
        f"upstream returned 503: demo upstream error 503 (after {MAX_ATTEMPTS} attempts)"
    )
    assert len(requests_mentioning(upstream_url, marker)) == MAX_ATTEMPTS


def test_retry_after_is_honoured(
    sdk: openai.OpenAI, upstream_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    text, marker = prompt("[[fail-first:1:429]] [[retry-after:0.1]]")

    with caplog.at_level(logging.WARNING, logger="app.engine.chat.client"):
        response = sdk.responses.create(model="demo", input=text)

    assert response.status == "completed"
    assert len(requests_mentioning(upstream_url, marker)) == 2
    [retry] = [r for r in caplog.records if r.name == "app.engine.chat.client"]
    # The upstream's 0.1 s, not a jittered backoff (which would be at most 0.01 s here).
    fields = vars(retry)
    assert (fields["attempt"], fields["status"], fields["delay_s"]) == (1, 429, 0.1)


def test_client_errors_are_not_retried(sdk: openai.OpenAI, upstream_url: str) -> None:
    text, marker = prompt("[[status:400]]")

    response = sdk.responses.create(model="demo", input=text)

    assert response.status == "failed"
    assert response.error is not None
    assert response.error.message == "upstream returned 400: demo upstream error 400"
    assert len(requests_mentioning(upstream_url, marker)) == 1


@pytest.mark.parametrize(
    ("directive", "message"),
    [
        ("[[mid-error]]", "upstream error mid-stream: demo upstream failed mid-stream"),
        ("[[cut]]", "stream ended without stop event"),
    ],
)
def test_failures_after_the_first_token_are_not_retried(
    sdk: openai.OpenAI, upstream_url: str, directive: str, message: str
) -> None:
    text, marker = prompt(directive)

    response = sdk.responses.create(model="demo", input=text)

    assert response.status == "failed"
    assert response.error is not None
    assert response.error.message == message
    # Tokens were already out: a second request would replay them into the same output.
    assert response.output[0].status == "incomplete"
    assert len(requests_mentioning(upstream_url, marker)) == 1


def test_a_retried_turn_that_breaks_mid_stream_is_not_retried_again(
    sdk: openai.OpenAI, upstream_url: str
) -> None:
    text, marker = prompt("[[fail-first:1]] [[mid-error]]")

    response = sdk.responses.create(model="demo", input=text)

    assert response.status == "failed"
    assert response.error is not None
    assert response.error.message == "upstream error mid-stream: demo upstream failed mid-stream"
    assert len(requests_mentioning(upstream_url, marker)) == 2


def test_retries_are_invisible_to_a_streaming_client(sdk: openai.OpenAI, upstream_url: str) -> None:
    text, marker = prompt("[[fail-first:1]]")

    with sdk.responses.create(model="demo", input=text, stream=True) as stream:
        events = list(stream)

    types = [event.type for event in events]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert types.count("response.created") == 1
    assert "error" not in types
    assert types[-1] == "response.completed"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == f"Hello! You said: retry {marker} one two three four"
    assert len(requests_mentioning(upstream_url, marker)) == 2


def test_unreachable_upstream_is_tried_max_attempts_times(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        upstream_base_url="http://127.0.0.1:9/v1",
        upstream_backoff_base_s=0.01,
        upstream_backoff_max_s=0.2,
        upstream_max_attempts=MAX_ATTEMPTS,
    )
    with running_api(settings) as url, sdk_client(url) as client:
        response = client.responses.create(model="demo", input="anyone there?")

    assert response.status == "failed"
    assert response.error is not None
    assert response.error.code == "upstream_error"
    assert response.error.message.startswith("upstream connection failed")
    assert response.error.message.endswith(f"(after {MAX_ATTEMPTS} attempts)")
