"""Webhook endpoints through the SDK's `client.webhooks`: create (the secret once), retrieve,
list, update, delete, the event types; scoped to the API key; bad input and URLs Ferry will
not send to (SSRF) refused with a 400 naming the parameter."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.webhooks import WebhookEndpoint, WebhookEndpointWithSecret

from app.config import Settings
from tests.support.clients import sdk_client
from tests.support.servers import running_api
from tests.support.webhook_receiver import WebhookReceiver

# The key of the APIs below that check URLs under other WEBHOOK_ALLOWED_URLS.
SSRF_KEY = "wk-ssrf"
RESPONSE_EVENT_TYPES = [
    "response.completed",
    "response.failed",
    "response.cancelled",
    "response.incomplete",
]


def test_an_endpoint_is_created_shown_changed_and_deleted(
    webhook_client: openai.OpenAI, webhook_receiver: WebhookReceiver
) -> None:
    url = webhook_receiver.url("lifecycle")
    created = webhook_client.webhooks.create(
        name="lifecycle", url=url, event_types=["response.completed", "response.failed"]
    )
    assert isinstance(created, WebhookEndpointWithSecret)
    assert created.id.startswith("whe_")
    assert (created.object, created.name, created.url) == ("webhook_endpoint", "lifecycle", url)
    assert created.event_types == ["response.completed", "response.failed"]
    assert created.signing_secret.startswith("whsec_")
    assert len(base64.b64decode(created.signing_secret.removeprefix("whsec_"))) == 32
    assert created.signing_secret_hint is not None
    assert created.signing_secret_hint.endswith(created.signing_secret[-4:])
    assert created.updated_at == created.created_at

    # The secret is shown once: never again when the endpoint is read.
    raw = webhook_client.webhooks.with_raw_response.retrieve(created.id)
    assert "signing_secret" not in raw.http_response.json()
    fetched = raw.parse()
    assert isinstance(fetched, WebhookEndpoint)
    assert fetched.model_dump() == {
        **created.model_dump(exclude={"signing_secret"}),
    }

    renamed = webhook_client.webhooks.update(
        created.id, name="renamed", event_types=["response.cancelled"]
    )
    assert (renamed.name, renamed.url) == ("renamed", url)
    assert renamed.event_types == ["response.cancelled"]
    assert renamed.updated_at is not None and renamed.updated_at >= created.created_at
    # An update that changes nothing does not advance `updated_at`.
    same = webhook_client.webhooks.update(created.id, name="renamed")
    assert same.model_dump() == renamed.model_dump()

    deleted = webhook_client.webhooks.delete(created.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (
        created.id,
        "webhook_endpoint.deleted",
        True,
    )
    with pytest.raises(openai.NotFoundError):
        webhook_client.webhooks.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        webhook_client.webhooks.delete(created.id)


def test_endpoints_are_listed_newest_first_page_by_page(
    webhook_client: openai.OpenAI, webhook_receiver: WebhookReceiver
) -> None:
    made = [
        webhook_client.webhooks.create(
            name=f"listed {n}", url=webhook_receiver.url("listed"), event_types=["response.failed"]
        )
        for n in range(3)
    ]
    first = webhook_client.webhooks.list(limit=2)
    assert [e.name for e in first.data] == ["listed 2", "listed 1"]
    assert first.has_more is True
    # The SDK's page iterator asks for the next page `after` the last id.
    assert [e.id for e in webhook_client.webhooks.list(limit=2)] == [e.id for e in reversed(made)]
    last = webhook_client.webhooks.list(limit=2, after=made[1].id)
    assert [e.id for e in last.data] == [made[0].id]
    assert last.has_more is False


def test_the_event_types_are_the_four_endings_of_a_response(webhook_client: openai.OpenAI) -> None:
    listed = webhook_client.webhooks.event_types.list()
    assert listed.object == "list"
    assert listed.data == RESPONSE_EVENT_TYPES


def test_another_api_key_finds_no_endpoint(
    webhook_api_url: str, webhook_keys: Iterator[str], webhook_receiver: WebhookReceiver
) -> None:
    with (
        sdk_client(webhook_api_url, api_key=next(webhook_keys)) as alice,
        sdk_client(webhook_api_url, api_key=next(webhook_keys)) as bob,
    ):
        endpoint = alice.webhooks.create(
            name="alice's", url=webhook_receiver.url("alice"), event_types=["response.completed"]
        )
        attempts: list[Callable[[], Any]] = [
            lambda: bob.webhooks.retrieve(endpoint.id),
            lambda: bob.webhooks.update(endpoint.id, name="bob's now"),
            lambda: bob.webhooks.rotate_secret(endpoint.id),
            lambda: bob.webhooks.test(endpoint.id, event_type="response.completed"),
            lambda: bob.webhooks.delete(endpoint.id),
        ]
        for attempt in attempts:
            with pytest.raises(openai.NotFoundError) as refused:
                attempt()
            error = refused.value.response.json()["error"]
            assert error["param"] == "webhook_endpoint_id"
            assert error["code"] is None
        assert bob.webhooks.list().data == []
        assert alice.webhooks.retrieve(endpoint.id).name == "alice's"
    assert webhook_receiver.received("alice") == []  # bob's test event was never sent


def _error(response: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["x-should-retry"] == "false"
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    return error


@pytest.fixture
def raw(webhook_api_url: str, webhook_key: str) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {webhook_key}"}
    with httpx.Client(base_url=f"{webhook_api_url}/v1", headers=headers, timeout=30) as http:
        yield http


PUBLIC_URL = "https://93.184.216.34/hook"  # an address literal: no lookup, nothing sent
GOOD = {"name": "x", "url": PUBLIC_URL, "event_types": ["response.failed"]}


def _with(**changes: Any) -> dict[str, Any]:
    return {**GOOD, **changes}


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD.items() if k != key}


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        (_without("name"), "name", "missing_required_parameter"),
        (_without("url"), "url", "missing_required_parameter"),
        (_without("event_types"), "event_types", "missing_required_parameter"),
        (_with(name=""), "name", "invalid_value"),
        (_with(name="x" * 257), "name", "invalid_value"),
        (_with(name=7), "name", "invalid_type"),
        (_with(url=7), "url", "invalid_type"),
        (_with(event_types=[]), "event_types", "invalid_value"),
        (_with(event_types="response.failed"), "event_types", "invalid_type"),
        (_with(event_types=["response.failed", "video.failed"]), "event_types[1]", "invalid_value"),
        (_with(event_types=[None]), "event_types[0]", "invalid_value"),
        (_with(secret="mine"), "secret", "unknown_parameter"),
        (_with(url="ftp://93.184.216.34/"), "url", "invalid_url"),
        (_with(url="https://"), "url", "invalid_url"),
        (_with(url=PUBLIC_URL + "a" * 2048), "url", "invalid_url"),
    ],
)  # fmt: skip
def test_a_bad_create_is_a_400_naming_the_parameter(
    raw: httpx.Client, body: dict[str, Any], param: str, code: str
) -> None:
    error = _error(raw.post("/webhook_endpoints", json=body))
    assert (error["param"], error["code"]) == (param, code)
    assert raw.get("/webhook_endpoints").json()["data"] == []  # nothing was written


def test_bad_parameters_of_the_other_routes_are_400s(
    raw: httpx.Client, webhook_receiver: WebhookReceiver
) -> None:
    body = {"name": "bad", "url": webhook_receiver.url("bad"), "event_types": ["response.failed"]}
    endpoint = raw.post("/webhook_endpoints", json=body).json()
    one = f"/webhook_endpoints/{endpoint['id']}"

    assert _error(raw.post(one, json={"event_types": ["video.completed"]}))["param"] == (
        "event_types[0]"
    )
    assert _error(raw.post(one, json={"url": 3}))["param"] == "url"
    assert _error(raw.post(f"{one}/test", json={}))["param"] == "event_type"
    assert _error(raw.post(f"{one}/test", json={"event_type": "batch.completed"}))["param"] == (
        "event_type"
    )
    keep = {"keep_old_secret_active_for_24_hours": "yes"}
    assert _error(raw.post(f"{one}/rotate_secret", json=keep))["param"] == (
        "keep_old_secret_active_for_24_hours"
    )
    assert _error(raw.get("/webhook_endpoints", params={"limit": 0}))["param"] == "limit"
    assert _error(raw.get("/webhook_endpoints", params={"limit": 101}))["param"] == "limit"
    missing = "whe_" + "0" * 48
    assert _error(raw.get("/webhook_endpoints", params={"after": missing}))["param"] == "after"
    not_json = raw.post(one, content=b"{nope", headers={"content-type": "application/json"})
    assert _error(not_json)["code"] == "invalid_json"
    # An id Ferry could not have made is not looked up, nor echoed back.
    odd = _error(raw.get(f"/webhook_endpoints/{'x' * 300}"), status=404)
    assert "x" * 300 not in odd["message"]

    unchanged = raw.get(one).json()
    assert unchanged == {k: v for k, v in endpoint.items() if k != "signing_secret"}
    # Without a body, rotate_secret takes its defaults, as it does with `{}`.
    assert raw.post(f"{one}/rotate_secret").status_code == 200


@pytest.fixture(scope="module")
def https_only_url(make_settings: Callable[..., Settings]) -> Iterator[str]:
    """An API with WEBHOOK_ALLOWED_URLS unset: any https URL, public addresses only."""
    settings = make_settings(api_keys=SSRF_KEY, webhook_allowed_urls="")
    with running_api(settings) as url:
        yield url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://93.184.216.34/hook", "must use https"),
        ("https://127.0.0.1/hook", "127.0.0.1"),
        ("https://localhost:8443/hook", "non-public address"),
        ("https://[::1]/hook", "::1"),
        ("https://[::ffff:10.0.0.1]/hook", "non-public address"),
        ("https://10.0.0.8/hook", "10.0.0.8"),
        ("https://192.168.1.1/hook", "192.168.1.1"),
        ("https://169.254.169.254/latest/meta-data", "169.254.169.254"),
        ("https://100.64.0.1/hook", "100.64.0.1"),
        ("https://0.0.0.0/hook", "0.0.0.0"),
    ],
)
def test_urls_that_are_not_https_or_not_public_are_refused(
    https_only_url: str, url: str, reason: str
) -> None:
    with sdk_client(https_only_url, api_key=SSRF_KEY) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            client.webhooks.create(name="ssrf", url=url, event_types=["response.completed"])
        error = refused.value.response.json()["error"]
        assert (error["param"], error["code"]) == ("url", "invalid_url")
        assert reason in error["message"]
        assert client.webhooks.list().data == []


def test_a_public_https_url_is_taken_and_a_private_one_is_refused_on_update(
    https_only_url: str,
) -> None:
    with sdk_client(https_only_url, api_key=SSRF_KEY) as client:
        # An address literal: accepted without a lookup, and nothing is sent on create.
        public = client.webhooks.create(
            name="public", url=PUBLIC_URL, event_types=["response.failed"]
        )
        with pytest.raises(openai.BadRequestError) as refused:
            client.webhooks.update(public.id, url="https://127.0.0.1/hook")
        assert refused.value.response.json()["error"]["param"] == "url"
        assert client.webhooks.retrieve(public.id).url == PUBLIC_URL
        client.webhooks.delete(public.id)


def test_a_prefix_lifts_the_address_check_only_for_the_host_it_names(
    make_settings: Callable[..., Settings], webhook_receiver: WebhookReceiver
) -> None:
    allowed = f"https://,{webhook_receiver.base_url}/hooks/"
    settings = make_settings(api_keys=SSRF_KEY, webhook_allowed_urls=allowed)
    with running_api(settings) as url, sdk_client(url, api_key=SSRF_KEY) as client:
        named = client.webhooks.create(
            name="named", url=webhook_receiver.url("named"), event_types=["response.failed"]
        )
        assert named.url.startswith("http://127.0.0.1:")
        refused = [
            ("https://10.0.0.8/hook", "non-public address"),  # only a scheme: lifts nothing
            (f"{webhook_receiver.base_url}/elsewhere", "none of the prefixes"),
            ("http://93.184.216.34/hook", "none of the prefixes"),
        ]
        for url_, reason in refused:
            with pytest.raises(openai.BadRequestError) as error:
                client.webhooks.create(name="no", url=url_, event_types=["response.failed"])
            assert reason in error.value.response.json()["error"]["message"]
        client.webhooks.delete(named.id)
