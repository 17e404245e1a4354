"""The WebSocket's messages: a `response.create` read as a streaming create, its lane, and
the error envelopes every refusal becomes."""

from __future__ import annotations

import json

import pytest

from app.engine.errors import Busy, RequestError
from app.http.errors import BodyTooLarge, Unauthorized
from app.http.socket_messages import (
    error_envelope,
    event_message,
    parse_create_message,
    refusal_envelope,
)


def test_a_create_message_is_a_streaming_create_body_and_a_lane() -> None:
    message = {"type": "response.create", "model": "m", "input": "hi", "store": False}
    assert parse_create_message(json.dumps(message), 1000) == (
        {"model": "m", "input": "hi", "store": False, "stream": True},
        None,
    )
    laned = json.dumps({**message, "stream_id": "a-1.b_2"}).encode()
    assert parse_create_message(laned, 1000)[1] == "a-1.b_2"


@pytest.mark.parametrize(
    ("message", "param", "code"),
    [
        ("[1, 2]", None, "invalid_json"),
        ('{"type": "response.create", "model": NaN}', None, "invalid_json"),
        ('{"model": "m"}', "type", "missing_required_parameter"),
        ('{"type": "session.update"}', "type", "invalid_value"),
        ('{"type": "response.create", "stream": false}', "stream", "unsupported_parameter"),
        ('{"type": "response.create", "background": false}', "background", "unsupported_parameter"),
        ('{"type": "response.create", "stream_options": {}}', "stream_options", None),
        ('{"type": "response.create", "stream_id": ""}', "stream_id", "invalid_stream_id"),
        ('{"type": "response.create", "stream_id": 7}', "stream_id", "invalid_stream_id"),
        ('{"type": "response.create", "model": "a\\u0000b"}', "model", "invalid_value"),
    ],
)
def test_what_is_not_a_create_message_is_refused_naming_the_parameter(
    message: str, param: str | None, code: str | None
) -> None:
    with pytest.raises(RequestError) as refused:
        parse_create_message(message, 1000)
    assert refused.value.param == param
    if code is not None:
        assert refused.value.code == code


def test_a_message_over_the_limit_is_refused_before_it_is_read() -> None:
    with pytest.raises(BodyTooLarge) as refused:
        parse_create_message("x" * 11, 10)
    assert refused.value.code == "body_too_large"
    assert refusal_envelope(refused.value)["status"] == 413


def test_events_carry_their_lane_only_when_it_has_a_name() -> None:
    event = {"type": "response.in_progress", "sequence_number": 1}
    assert json.loads(event_message(event, None)) == event
    assert json.loads(event_message(event, "lane")) == {**event, "stream_id": "lane"}


def test_refusals_are_error_envelopes_with_their_status_and_a_code() -> None:
    assert refusal_envelope(RequestError("Nope.", param="x")) == {
        "type": "error",
        "status": 400,
        "error": {
            "type": "invalid_request_error",
            "code": "invalid_request_error",  # the specification wants a code: the type
            "message": "Nope.",
            "param": "x",
        },
    }
    busy = refusal_envelope(Busy("Later.", retry_after_s=1.5), "lane")
    assert busy["status"] == 429
    assert busy["error"]["type"] == busy["error"]["code"] == "rate_limit_exceeded"
    assert busy["error"]["headers"] == {"retry-after": "2"}
    assert busy["stream_id"] == "lane"
    assert refusal_envelope(Unauthorized("Who?", code="invalid_api_key"))["status"] == 401
    assert error_envelope(500, "Oops.", code=None)["error"]["code"] == "server_error"
