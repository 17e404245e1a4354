"""API keys: 401 without one, and each key sees only its own responses."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import openai
import pytest

from app.config import Settings
from tests.fakes.upstream.spy import requests_mentioning
from tests.support.clients import sdk_client
from tests.support.servers import running_api


@pytest.fixture(scope="module")
def keyed_api(make_settings: Callable[..., Settings]) -> Iterator[str]:
    settings = make_settings(api_keys="key-alpha, key-beta", upstream_api_key="sk-upstream-1")
    with running_api(settings) as url:
        yield url


@pytest.fixture(scope="module")
def alpha(keyed_api: str) -> Iterator[openai.OpenAI]:
    with sdk_client(keyed_api, "key-alpha") as sdk:
        yield sdk


def test_request_without_key_is_401(keyed_api: str) -> None:
    reply = httpx.post(f"{keyed_api}/v1/responses", json={"model": "demo", "input": "hi"})
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "missing_api_key"


def test_wrong_key_is_401(keyed_api: str) -> None:
    with (
        sdk_client(keyed_api, "key-gamma") as gamma,
        pytest.raises(openai.AuthenticationError) as info,
    ):
        gamma.responses.create(model="demo", input="hi")
    assert info.value.body["code"] == "invalid_api_key"  # type: ignore[index]


def test_responses_are_visible_only_to_their_key(keyed_api: str, alpha: openai.OpenAI) -> None:
    created = alpha.responses.create(model="demo", input="mine")
    assert alpha.responses.retrieve(created.id).output_text == "Hello! You said: mine"
    with sdk_client(keyed_api, "key-beta") as beta:
        with pytest.raises(openai.NotFoundError):
            beta.responses.retrieve(created.id)
        # A previous response of another key is as unknown as a missing one.
        with pytest.raises(openai.BadRequestError) as info:
            beta.responses.create(model="demo", input="hi", previous_response_id=created.id)
    assert info.value.body["code"] == "previous_response_not_found"  # type: ignore[index]


def test_upstream_key_is_sent_as_bearer(alpha: openai.OpenAI, upstream_url: str) -> None:
    alpha.responses.create(model="demo", input="who am I?")
    last = requests_mentioning(upstream_url, "who am I?")[-1]
    assert last["headers"]["authorization"] == "Bearer sk-upstream-1"
