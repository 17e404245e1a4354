"""A model turn's upstream request is retried until its first token, and never after.

End to end: the openai SDK (which must not retry itself) against a Ferry API with short
backoffs, in front of the demo upstream, whose request log counts the tries each prompt took.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import openai
import pytest
from openai.types.responses import Response, ResponseError

from app.config import Settings
from tests.fakes.upstream.spy import requests_mentioning
from tests.support.clients import sdk_client
from tests.support.servers import running_api

MAX_ATTEMPTS = 3
# Retries that wait milliseconds, so the tests stay quick.
FAST_RETRIES = {
    "upstream_backoff_base_s": 0.01,
    "upstream_backoff_max_s": 0.2,
    "upstream_max_attempts": MAX_ATTEMPTS,
}


@pytest.fixture(scope="module")
def fast_api_url(make_settings: Callable[..., Settings]) -> Iterator[str]:
    """A Ferry API with `FAST_RETRIES`."""
    with running_api(make_settings(**FAST_RETRIES)) as url:
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


def echo(marker: str) -> str:
    """The demo's answer to the prompt of `marker`: its text, without the directives."""
    return f"Hello! You said: retry {marker} one two three four"


@dataclass
class Tried:
    """A blocking create's response, the marker of its prompt, and the tries it took."""

    response: Response
    marker: str
    tries: int  # the requests the upstream saw for the prompt


Ask = Callable[[str], Tried]


@pytest.fixture
def ask(sdk: openai.OpenAI, upstream_url: str) -> Ask:
    """A blocking create of a `prompt` with `directives`, and how many tries it took."""

    def ask_once(directives: str) -> Tried:
        text, marker = prompt(directives)
        response = sdk.responses.create(model="demo", input=text)
        return Tried(response, marker, len(requests_mentioning(upstream_url, marker)))

    return ask_once


def error_of_failed(response: Response) -> ResponseError:
    assert response.status == "failed"
    assert response.error is not None
    return response.error


def test_failures_before_the_first_token_are_retried(ask: Ask) -> None:
    tried = ask("[[fail-first:2]]")

    assert tried.response.status == "completed"
    assert tried.response.output_text == echo(tried.marker)
    assert tried.tries == 3


def test_giving_up_reports_the_last_error_and_the_attempts(ask: Ask) -> None:
    tried = ask("[[fail-first:5]]")

    error = error_of_failed(tried.response)
    assert error.code == "upstream_error"
    assert error.message == (
        f"upstream returned 503: demo upstream error 503 (after {MAX_ATTEMPTS} attempts)"
    )
    assert tried.tries == MAX_ATTEMPTS


def test_retry_after_is_honoured(ask: Ask, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="app.engine.chat.client"):
        tried = ask("[[fail-first:1:429]] [[retry-after:0.1]]")

    assert tried.response.status == "completed"
    assert tried.tries == 2
    [retry] = [r for r in caplog.records if r.name == "app.engine.chat.client"]
    # The upstream's 0.1 s, not a jittered backoff (which would be at most 0.01 s here).
    fields = vars(retry)
    assert (fields["attempt"], fields["status"], fields["delay_s"]) == (1, 429, 0.1)


def test_client_errors_are_not_retried(sdk: openai.OpenAI, upstream_url: str) -> None:
    text, marker = prompt("[[status:400]]")
    with pytest.raises(openai.BadRequestError) as info:
        sdk.responses.create(model="demo", input=text)

    assert info.value.body["message"] == "demo upstream error 400"  # type: ignore[index]
    assert len(requests_mentioning(upstream_url, marker)) == 1


@pytest.mark.parametrize(
    ("directive", "message"),
    [
        ("[[mid-error]]", "upstream error mid-stream: demo upstream failed mid-stream"),
        ("[[cut]]", "stream ended without stop event"),
    ],
)
def test_failures_after_the_first_token_are_not_retried(
    ask: Ask, directive: str, message: str
) -> None:
    tried = ask(directive)

    assert error_of_failed(tried.response).message == message
    # Tokens were already out: a second request would replay them into the same output.
    assert tried.response.output[0].status == "incomplete"
    assert tried.tries == 1


def test_a_retried_turn_that_breaks_mid_stream_is_not_retried_again(
    ask: Ask,
) -> None:
    tried = ask("[[fail-first:1]] [[mid-error]]")

    assert error_of_failed(tried.response).message == (
        "upstream error mid-stream: demo upstream failed mid-stream"
    )
    assert tried.tries == 2


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
    assert deltas == echo(marker)
    assert len(requests_mentioning(upstream_url, marker)) == 2


def test_unreachable_upstream_is_tried_max_attempts_times(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(upstream_base_url="http://127.0.0.1:9/v1", **FAST_RETRIES)
    with running_api(settings) as url, sdk_client(url) as client:
        response = client.responses.create(model="demo", input="anyone there?")

    error = error_of_failed(response)
    assert error.code == "upstream_error"
    assert error.message.startswith("upstream connection failed")
    assert error.message.endswith(f"(after {MAX_ATTEMPTS} attempts)")
