"""Request ids on a real API process: in the X-Request-Id header (the SDK's `_request_id`),
taken from a trusted proxy or made, and on every log line of the request beside the
response id."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.clients import sdk_client
from tests.support.processes import Command, running_api_process
from tests.support.sse import iter_frames
from tests.support.waiting import wait_for

GENERATED = re.compile(r"req_[0-9a-f]{32}")


@pytest.fixture(scope="module")
def behind_proxy(service_env: dict[str, str]) -> Iterator[tuple[Command, str]]:
    """An API that trusts loopback (where the tests send from) to name requests."""
    with running_api_process({**service_env, "TRUSTED_PROXIES": "127.0.0.1"}, "--no-migrate") as (
        api,
        url,
    ):
        yield api, url


def lines_of(api: Command, request_id: str) -> list[dict[str, Any]]:
    return [record for record in api.records() if record.get("request_id") == request_id]


def test_the_sdk_sees_the_id_the_logs_carry(behind_proxy: tuple[Command, str]) -> None:
    api, url = behind_proxy
    with sdk_client(url) as client:
        response = client.responses.create(model="demo", input="which request?")
    request_id = response._request_id
    assert request_id is not None and GENERATED.fullmatch(request_id)

    # The request's lines: accepted, and finished by the inline run (a task of its own),
    # each beside the response id.
    def finished() -> list[dict[str, Any]] | None:
        lines = lines_of(api, request_id)
        return lines if "response finished" in [line["msg"] for line in lines] else None

    lines = wait_for(finished, what="the request's log lines")
    assert {"response accepted", "response finished"} <= {line["msg"] for line in lines}
    assert {line.get("response_id") for line in lines} == {response.id}
    assert not [r for r in api.records() if r.get("response_id") == response.id and r not in lines]


def test_a_trusted_proxys_id_is_kept_on_a_stream(behind_proxy: tuple[Command, str]) -> None:
    api, url = behind_proxy
    sent = "edge-7f3a9c01"
    body = {"model": "demo", "input": "stream it", "stream": True}
    with httpx.stream(
        "POST", f"{url}/v1/responses", json=body, headers={"X-Request-Id": sent}, timeout=30
    ) as reply:
        assert reply.status_code == 200
        assert reply.headers["x-request-id"] == sent
        events = [event for _, event in iter_frames(reply)]
    assert events[-1]["type"] == "response.completed"
    response_id = events[0]["response"]["id"]

    def finished() -> list[dict[str, Any]] | None:
        lines = lines_of(api, sent)
        return lines if "response finished" in [line["msg"] for line in lines] else None

    lines = wait_for(finished, what="the stream's log lines")
    assert {line.get("response_id") for line in lines} == {response_id}


def test_an_id_from_an_untrusted_sender_is_replaced(api_url: str) -> None:
    """The suite's API trusts no proxy (the default)."""
    reply = httpx.get(
        f"{api_url}/v1/responses/resp_none", headers={"X-Request-Id": "spoofed-1"}, timeout=30
    )
    assert reply.status_code == 404
    assert GENERATED.fullmatch(reply.headers["x-request-id"])


def test_a_malformed_id_is_replaced_even_from_a_trusted_proxy(
    behind_proxy: tuple[Command, str],
) -> None:
    _, url = behind_proxy
    reply = httpx.get(f"{url}/health", headers={"X-Request-Id": "two words"}, timeout=30)
    assert GENERATED.fullmatch(reply.headers["x-request-id"])
