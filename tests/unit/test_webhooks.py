"""Webhooks without a database: signatures the SDK verifies, the URL rules (allow-list and
SSRF) with a scripted resolver, the sender on a MockTransport, and the retry backoff."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

import httpx
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.engine.webhook_delivery import backoff_s
from app.engine.webhook_sender import WebhookSender
from app.engine.webhook_signing import delivery_headers, new_secret, secret_hint
from app.engine.webhook_urls import Resolver, UrlPolicy, UrlRefused
from app.store.webhooks import event_payload

BODY = event_payload("evt_1", "response.completed", datetime.now(UTC), {"id": "resp_1"}).encode()


def resolver(answers: dict[str, list[str]]) -> Resolver:
    """A resolver that knows only `answers`; any other host does not resolve."""

    async def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise OSError(f"unknown host {host}")
        return answers[host]

    return resolve


@pytest.fixture
def sdk() -> openai.OpenAI:
    return openai.OpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1")


def test_a_signature_verifies_with_the_sdk_and_only_with_its_secret(sdk: openai.OpenAI) -> None:
    secret, other = new_secret(), new_secret()
    headers = delivery_headers([secret], "wh_1", int(time.time()), BODY)
    event = sdk.webhooks.unwrap(BODY, headers, secret=secret)
    assert event.type == "response.completed"
    with pytest.raises(openai.InvalidWebhookSignatureError):
        sdk.webhooks.verify_signature(BODY, headers, secret=other)
    # Another webhook-id or body breaks the signature.
    with pytest.raises(openai.InvalidWebhookSignatureError):
        sdk.webhooks.verify_signature(BODY, {**headers, "webhook-id": "wh_2"}, secret=secret)
    with pytest.raises(openai.InvalidWebhookSignatureError):
        sdk.webhooks.verify_signature(BODY + b" ", headers, secret=secret)


def test_two_secrets_sign_twice_and_either_verifies(sdk: openai.OpenAI) -> None:
    new, old = new_secret(), new_secret()
    headers = delivery_headers([new, old], "wh_1", int(time.time()), BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    sdk.webhooks.verify_signature(BODY, headers, secret=new)
    sdk.webhooks.verify_signature(BODY, headers, secret=old)


def test_the_hint_shows_the_end_of_the_secret_only() -> None:
    secret = new_secret()
    hint = secret_hint(secret)
    assert hint.startswith("whsec_") and hint.endswith(secret[-4:])
    assert secret[6:-4] not in hint


@pytest.mark.parametrize(
    ("prefixes", "url", "allowed"),
    [
        ([], "https://hooks.example/x", True),
        ([], "http://hooks.example/x", False),  # https only without prefixes
        (["https://hooks.example/"], "https://hooks.example/x", True),
        (["https://hooks.example/"], "https://hooks.example.evil/x", False),
        (["http://"], "http://hooks.example/x", True),
        (["http://"], "https://hooks.example/x", False),
    ],
)
def test_the_allow_list_is_a_list_of_prefixes(prefixes: list[str], url: str, allowed: bool) -> None:
    policy = UrlPolicy(prefixes)
    if allowed:
        policy.check_form(url)
    else:
        with pytest.raises(UrlRefused):
            policy.check_form(url)


@pytest.mark.parametrize(
    ("prefixes", "addresses", "allowed"),
    [
        ([], ["93.184.216.34"], True),
        ([], ["93.184.216.34", "10.0.0.1"], False),  # one private answer is enough
        ([], ["127.0.0.1"], False),
        ([], ["::1"], False),
        ([], ["::ffff:169.254.169.254"], False),
        ([], ["fd00::1"], False),
        ([], ["224.0.0.1"], False),
        (["https://"], ["10.0.0.1"], False),  # a scheme names no host
        (["https://hooks."], ["10.0.0.1"], False),  # nor does the start of a name
        (["https://hooks.internal/"], ["10.0.0.1"], True),  # the operator meant this host
        (["https://hooks.internal:8443/"], ["10.0.0.1"], False),  # another port: no match
    ],
)
async def test_a_host_must_resolve_to_public_addresses_unless_a_prefix_names_it(
    prefixes: list[str], addresses: list[str], allowed: bool
) -> None:
    policy = UrlPolicy(prefixes, resolver({"hooks.internal": addresses}))
    url = "https://hooks.internal/events"
    if not allowed:
        with pytest.raises(UrlRefused):
            await policy.target(url)
        return
    target = await policy.target(url)
    assert target.url.host == addresses[0]
    assert (target.host_header, target.server_name) == ("hooks.internal", "hooks.internal")


@pytest.mark.parametrize(
    "url",
    [
        "https://[::1/x",  # an unclosed address
        "https://exa mple.com/",
        "https://a..b/",
        "https://host:99999/",
        "https://host:-1/",
        "https://%zz/",
        "https://\u200b/",
        "https://",
        "mailto:hooks@example.com",
        "/relative/path",
    ],
)
async def test_a_malformed_url_is_refused_saying_so(url: str) -> None:
    policy = UrlPolicy(["https://", "http://"], resolver({}))
    with pytest.raises(UrlRefused):
        await policy.target(url)


@settings(max_examples=300, deadline=None)
@given(tail=st.text(max_size=60), scheme=st.sampled_from(["https://", "http://", ""]))
def test_any_text_is_a_target_or_refused_never_an_error(scheme: str, tail: str) -> None:
    policy = UrlPolicy(["https://", "http://"], resolver_of_anything())

    async def check() -> None:
        try:
            target = await policy.target(scheme + tail)
        except UrlRefused:
            return
        assert target.url.host == "93.184.216.34"

    asyncio.run(check())


def resolver_of_anything() -> Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        return ["93.184.216.34"]

    return resolve


async def test_a_host_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(UrlRefused, match="could not be resolved"):
        await UrlPolicy([], resolver({})).target("https://nowhere.example/x")


class Receiver:
    """A MockTransport receiver that records what reached it."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, text="ok")


def sender(receiver: Receiver, answers: dict[str, list[str]]) -> WebhookSender:
    policy = UrlPolicy([], resolver(answers))
    return WebhookSender(policy, 5.0, transport=httpx.MockTransport(receiver))


async def test_a_delivery_goes_to_the_checked_address_signed(sdk: openai.OpenAI) -> None:
    receiver = Receiver()
    secret = new_secret()
    sending = sender(receiver, {"hooks.example": ["93.184.216.34"]})
    try:
        outcome = await sending.send(
            "https://hooks.example:8443/in", "wh_9", BODY.decode(), [secret]
        )
    finally:
        await sending.aclose()
    assert (outcome.delivered, outcome.status_code, outcome.error) == (True, 200, None)
    [request] = receiver.requests
    assert str(request.url) == "https://93.184.216.34:8443/in"
    assert request.headers["host"] == "hooks.example:8443"
    assert request.extensions["sni_hostname"] == "hooks.example"
    assert request.headers["webhook-id"] == "wh_9"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content)["data"] == {"id": "resp_1"}
    sdk.webhooks.verify_signature(request.content, dict(request.headers), secret=secret)


async def test_a_host_that_now_resolves_privately_gets_nothing() -> None:
    receiver = Receiver()
    sending = sender(receiver, {"hooks.example": ["10.1.2.3"]})  # DNS changed since
    try:
        outcome = await sending.send("https://hooks.example/in", "wh_9", "{}", [new_secret()])
    finally:
        await sending.aclose()
    assert receiver.requests == []
    assert outcome.status_code is None and not outcome.delivered
    assert outcome.error is not None and "10.1.2.3" in outcome.error


@pytest.mark.parametrize("status", [301, 404, 500])
async def test_anything_but_a_2xx_is_a_failed_attempt(status: int) -> None:
    sending = sender(Receiver(status), {"hooks.example": ["93.184.216.34"]})
    try:
        outcome = await sending.send("https://hooks.example/in", "wh_9", "{}", [new_secret()])
    finally:
        await sending.aclose()
    assert (outcome.delivered, outcome.status_code) == (False, status)
    assert outcome.error == f"the receiver answered {status}"


async def test_no_connection_is_a_failed_attempt_with_its_reason() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    policy = UrlPolicy([], resolver({"hooks.example": ["93.184.216.34"]}))
    sending = WebhookSender(policy, 5.0, transport=httpx.MockTransport(refuse))
    try:
        outcome = await sending.send("https://hooks.example/in", "wh_9", "{}", [new_secret()])
    finally:
        await sending.aclose()
    assert outcome.status_code is None
    assert outcome.error == "ConnectError: connection refused"


def test_the_backoff_doubles_up_to_its_cap_with_jitter() -> None:
    for failures, ceiling in [(1, 5.0), (2, 10.0), (3, 20.0), (10, 600.0), (500, 600.0)]:
        waits = [backoff_s(failures, 5.0, 600.0) for _ in range(50)]
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits)
