"""An upstream's refusal of a blocking create's first model turn is the client's HTTP error:
the upstream's status and message in OpenAI's envelope, the recorded `failed` response named
in `x-response-id`. 401/403 are Ferry's misconfiguration: a 502 in Ferry's words. Streams,
background responses and later turns keep reporting failures in the response itself."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.upstream.spy import requests_mentioning
from tests.support.schema import assert_valid_response
from tests.support.sse import stream_events
from tests.support.waiting import wait_for

# What the upstream says when it refuses Ferry's key: words the client must never see.
LEAKY_AUTH_MESSAGE = "Incorrect API key provided: sk-upstream-secret-1234"


def refusal(status: int, message: str, code: str | None = None) -> str:
    """The directives that make the fake upstream refuse with `status`, `message`, `code`."""
    directives = f"[[status:{status}]] [[error-message:{message}]]"
    return directives + (f" [[error-code:{code}]]" if code else "")


def failed_response(client: openai.OpenAI, exc: openai.APIStatusError) -> Any:
    """The response the refused create recorded, found by the id in `x-response-id`."""
    response_id = exc.response.headers["x-response-id"]
    raw = client.responses.with_raw_response.retrieve(response_id)
    assert_valid_response(raw.http_response.json())
    return raw.parse()


@pytest.mark.parametrize(
    ("status", "error_class", "message", "code"),
    [
        (404, openai.NotFoundError, "The model `nope` does not exist.", "model_not_found"),
        (
            400,
            openai.BadRequestError,
            "This model's maximum context length is 8 tokens. However, you requested 90.",
            "context_length_exceeded",
        ),
        (422, openai.UnprocessableEntityError, "Unprocessable: temperature is too hot", None),
    ],
    ids=["unknown-model", "context-too-long", "unprocessable"],
)
def test_a_refused_blocking_create_is_the_upstreams_error(
    client: openai.OpenAI,
    status: int,
    error_class: type[openai.APIStatusError],
    message: str,
    code: str | None,
) -> None:
    with pytest.raises(error_class) as info:
        client.responses.create(model="demo", input=f"refuse me {refusal(status, message, code)}")

    exc = info.value
    assert exc.status_code == status
    assert exc.body == {
        "message": message,
        "type": "invalid_request_error",
        "param": None,
        "code": code,
    }
    recorded = failed_response(client, exc)
    assert recorded.status == "failed"
    assert recorded.error is not None
    assert recorded.error.code == "upstream_error"
    assert recorded.error.message == f"upstream returned {status}: {message}"
    assert recorded.output == []


def test_a_rate_limit_after_ferrys_retries_passes_on_its_retry_after(
    client: openai.OpenAI, upstream_url: str
) -> None:
    marker = f"busy-{secrets.token_hex(4)}"
    directives = refusal(429, "Rate limit reached for requests", "rate_limit_exceeded")
    with pytest.raises(openai.RateLimitError) as info:
        client.responses.create(model="demo", input=f"{marker} {directives} [[retry-after:0.2]]")

    exc = info.value
    assert exc.body == {
        "message": "Rate limit reached for requests",
        "type": "rate_limit_exceeded",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    assert exc.response.headers["retry-after"] == "1"  # 0.2 s, in whole seconds
    assert len(requests_mentioning(upstream_url, marker)) == 3  # UPSTREAM_MAX_ATTEMPTS
    assert failed_response(client, exc).status == "failed"


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_credentials_are_a_502_in_ferrys_words(client: openai.OpenAI, status: int) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        client.responses.create(
            model="demo", input=f"who am I {refusal(status, LEAKY_AUTH_MESSAGE, 'invalid_key')}"
        )

    exc = info.value
    assert exc.status_code == 502
    assert exc.body["code"] == "upstream_auth_failed"  # type: ignore[index]
    assert exc.body["type"] == "server_error"  # type: ignore[index]
    assert "rejected Ferry's credentials" in exc.message
    assert exc.response.headers["x-should-retry"] == "false"
    recorded = failed_response(client, exc)
    assert recorded.status == "failed"
    assert recorded.error is not None
    assert recorded.error.code == "upstream_auth_failed"
    for said in (exc.response.text, recorded.model_dump_json()):
        assert "sk-upstream-secret" not in said
        assert "Incorrect API key" not in said


def test_the_refusal_on_the_wire(api_url: str) -> None:
    body = {"model": "demo", "input": f"wire {refusal(404, 'No such model.')}"}
    reply = httpx.post(f"{api_url}/v1/responses", json=body, timeout=30)

    assert reply.status_code == 404
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["x-should-retry"] == "false"
    assert reply.json() == {
        "error": {
            "message": "No such model.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    response_id = reply.headers["x-response-id"]
    stored = httpx.get(f"{api_url}/v1/responses/{response_id}", timeout=30)
    assert stored.status_code == 200
    assert stored.json()["status"] == "failed"


def test_an_idempotent_retry_of_a_refused_create_gets_the_same_error(client: openai.OpenAI) -> None:
    key = {"Idempotency-Key": f"refused-{secrets.token_hex(6)}"}
    text = f"twice {refusal(404, 'No such model.')}"
    errors = []
    for _ in range(2):
        with pytest.raises(openai.NotFoundError) as info:
            client.responses.create(model="demo", input=text, extra_headers=key)
        errors.append(info.value)

    first, again = errors
    assert again.response.headers["x-response-id"] == first.response.headers["x-response-id"]
    assert again.body == first.body


def test_a_streamed_refusal_stays_a_failed_event(api_url: str) -> None:
    body = {"model": "demo", "input": f"s {refusal(404, 'No such model.')}", "stream": True}
    events = stream_events(api_url, body)

    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "error",
        "response.failed",
    ]
    assert events[-1]["response"]["error"]["message"] == "upstream returned 404: No such model."


@pytest.mark.usefixtures("worker")
def test_a_background_refusal_stays_a_failed_response(client: openai.OpenAI) -> None:
    queued = client.responses.create(
        model="demo", input=f"b {refusal(404, 'No such model.')}", background=True
    )

    final = wait_for(
        lambda: (r := client.responses.retrieve(queued.id)).status == "failed" and r,
        timeout_s=30,
        what="the background response to fail",
    )
    assert final.error is not None
    assert final.error.message == "upstream returned 404: No such model."


def test_a_refusal_after_tools_ran_is_a_failed_response(client: openai.OpenAI) -> None:
    # The first turn calls a server-side tool; the turn after its result is refused.
    text = 'weather [[call:lookup_weather {"city": "Oslo"}]] [[then-status:400]]'
    response = client.responses.create(model="demo", input=text)

    assert response.status == "failed"
    assert response.error is not None
    assert response.error.message == "upstream returned 400: demo upstream error 400"
    assert [item.type for item in response.output] == ["function_call", "function_call_output"]
