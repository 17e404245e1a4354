"""Token counts (the upstream's `/tokenize`, else the estimate), models' context sizes, and
`truncation: "auto"` dropping the oldest units of a conversation until it fits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.engine.chat.client import UpstreamClient
from app.engine.chat.messages import ChatMessage
from app.engine.context_window import LISTING_RETRY_S, ContextWindow, droppable_units
from app.engine.token_count import (
    IMAGE_TOKENS,
    MESSAGE_OVERHEAD_TOKENS,
    REPLY_PRIMING_TOKENS,
    TokenCounter,
    estimate_tokens,
)
from app.shapes import Item
from tests.unit.harness import Harness, unit_settings
from tests.unit.upstream import ScriptedUpstream, status, text_reply

Json = dict[str, Any]


def words(body: Json) -> int:
    """The scripted upstream's tokenizer: a token a word of the messages' text."""
    return sum(len(str(m.get("content") or "").split()) for m in body["messages"])


async def window_for(
    upstream: ScriptedUpstream, **settings: Any
) -> AsyncIterator[tuple[ContextWindow, UpstreamClient]]:
    values: Settings = unit_settings(**settings)
    client = UpstreamClient(values, transport=httpx.MockTransport(upstream.handler))
    try:
        yield ContextWindow(client, values), client
    finally:
        await client.aclose()


@pytest.fixture
async def window(upstream: ScriptedUpstream) -> AsyncIterator[ContextWindow]:
    async for made, _ in window_for(upstream, model_context_tokens="small=40,tiny=12"):
        yield made


def said(role: str, text: str) -> Item:
    return {"type": "message", "role": role, "content": [{"type": "input_text", "text": text}]}


def call(call_id: str, name: str = "lookup") -> Item:
    return {"type": "function_call", "call_id": call_id, "name": name, "arguments": "{}"}


def result(call_id: str, text: str = "ten words of tool output are here right now ok") -> Item:
    return {"type": "function_call_output", "call_id": call_id, "output": text}


def thought(text: str) -> Item:
    return {
        "type": "reasoning",
        "summary": [],
        "content": [{"type": "reasoning_text", "text": text}],
    }


def texts(messages: list[ChatMessage]) -> list[str]:
    return [str(message.get("content")) for message in messages]


# --- the estimate ----------------------------------------------------------------------------


def test_the_estimate_is_a_quarter_token_a_byte_plus_each_messages_framing() -> None:
    one = [{"role": "user", "content": "abcdefgh"}]  # 8 bytes: 2 tokens
    assert estimate_tokens(one) == 2 + MESSAGE_OVERHEAD_TOKENS + REPLY_PRIMING_TOKENS
    accented = [{"role": "user", "content": "é"}]  # 2 bytes: rounded up to 1 token
    assert estimate_tokens(accented) == 1 + MESSAGE_OVERHEAD_TOKENS + REPLY_PRIMING_TOKENS
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 4000}}
    pictured = [{"role": "user", "content": [{"type": "text", "text": "abcd"}, image]}]
    assert estimate_tokens(pictured) == estimate_tokens([{"role": "user", "content": "abcd"}]) + (
        IMAGE_TOKENS
    )
    assert estimate_tokens([]) == 0
    assert estimate_tokens([{"role": "user", "content": ""}]) >= 1


def test_the_estimate_never_falls_as_the_input_grows() -> None:
    grown: list[ChatMessage] = []
    counts = [estimate_tokens(grown)]
    steps: list[ChatMessage] = [
        {"role": "system", "content": "Rules."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "", "reasoning_content": "Think."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c", "content": "42"},
        {"role": "user", "content": "日本語のテキスト"},
    ]
    for message in steps:
        grown.append(message)
        counts.append(estimate_tokens(grown))
    assert counts == sorted(counts) and len(set(counts)) == len(counts)
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    assert estimate_tokens(grown, tools) > estimate_tokens(grown)


# --- counting --------------------------------------------------------------------------------


async def test_the_upstreams_count_is_used_and_a_missing_tokenizer_is_not_asked_again(
    upstream: ScriptedUpstream,
) -> None:
    async for window, _ in window_for(upstream):
        counter: TokenCounter = window.counter
        messages: list[ChatMessage] = [{"role": "user", "content": "one two three"}]
        upstream.tokenizer = words
        exact = await counter.count("m", messages, None)
        assert (exact.tokens, exact.exact) == (3, True)
        assert upstream.questions[-1] == ("/tokenize", {"model": "m", "messages": messages})

        upstream.tokenizer = None  # now answered 404: this upstream has none
        estimated = await counter.count("m", messages, None)
        assert (estimated.tokens, estimated.exact) == (estimate_tokens(messages), False)
        asked = len(upstream.questions)
        await counter.count("m", messages, None)
        assert len(upstream.questions) == asked


async def test_a_tokenizer_that_fails_is_asked_again_next_time(upstream: ScriptedUpstream) -> None:
    calls: list[int] = []

    def failing_once(body: Json) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise httpx.ReadError("reset")
        return words(body)

    upstream.tokenizer = failing_once
    async for window, _ in window_for(upstream):
        messages: list[ChatMessage] = [{"role": "user", "content": "one two"}]
        first = await window.counter.count(None, messages, None)
        assert not first.exact
        second = await window.counter.count(None, messages, None)
        assert (second.tokens, second.exact) == (2, True)
        assert "model" not in upstream.questions[-1][1]  # type: ignore[operator]


# --- context sizes ---------------------------------------------------------------------------


async def test_a_configured_size_wins_and_the_upstreams_list_is_read_once(
    upstream: ScriptedUpstream,
) -> None:
    upstream.models = [
        {"id": "listed", "object": "model", "max_model_len": 4096},
        {"id": "small", "object": "model", "max_model_len": 999},
        {"id": "plain", "object": "model"},
        {"id": "odd", "object": "model", "max_model_len": "big"},
    ]
    async for window, _ in window_for(upstream, model_context_tokens="small=40"):
        assert await window.context_tokens("small") == 40
        assert await window.context_tokens("listed") == 4096
        assert await window.context_tokens("plain") is None
        assert await window.context_tokens("odd") is None
        assert await window.context_tokens(None) is None
        assert [path for path, _ in upstream.questions] == ["/v1/models"]


async def test_a_failed_listing_is_not_asked_again_for_a_while(
    upstream: ScriptedUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr("app.engine.context_window.time.monotonic", lambda: clock[0])
    failing = {"n": 0}
    original = upstream.handler

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models" and failing["n"] == 0:
            failing["n"] += 1
            return httpx.Response(503)
        return await original(request)

    upstream.handler = handler  # type: ignore[method-assign]
    upstream.models = [{"id": "listed", "max_model_len": 64}]
    async for window, _ in window_for(upstream):
        assert await window.context_tokens("listed") is None
        assert await window.context_tokens("listed") is None  # not asked again yet
        clock[0] += LISTING_RETRY_S
        assert await window.context_tokens("listed") == 64


# --- what goes together ----------------------------------------------------------------------


def test_units_keep_calls_with_their_outputs_and_reasoning_with_what_follows() -> None:
    items = [
        said("system", "rules"),  # 0: never dropped
        said("user", "q1"),  # 1
        thought("hmm"),  # 2
        call("a"),  # 3
        call("b"),  # 4: the same turn as a
        result("a"),  # 5
        said("developer", "more rules"),  # 6: never dropped
        result("b"),  # 7
        said("assistant", "a1"),  # 8
        result("orphan"),  # 9
        thought("trailing"),  # 10
    ]
    assert droppable_units(items) == [[1], [2, 3, 4, 5, 7], [8], [9], [10]]


# --- fitting ---------------------------------------------------------------------------------


def turns(count: int) -> list[Item]:
    """`count` user and assistant messages of five words each, numbered."""
    role = ("user", "assistant")
    return [said(role[n % 2], f"turn {n} has five words") for n in range(count)]


async def test_what_fits_or_has_no_known_size_is_sent_whole(
    window: ContextWindow, upstream: ScriptedUpstream
) -> None:
    upstream.tokenizer = words
    items = turns(6)
    assert await window.fit({"model": "unknown"}, items, None) == items
    assert await window.fit({"model": "small"}, items, None) == items  # 30 words <= 40


async def test_the_oldest_units_go_until_the_count_fits_less_the_output_room(
    window: ContextWindow, upstream: ScriptedUpstream
) -> None:
    upstream.tokenizer = words
    items = [said("system", "Keep this."), *turns(10)]  # 2 + 50 words
    request = {"model": "small", "instructions": "Be kind.", "max_output_tokens": 10}

    kept = await window.fit(request, items, None)

    # 40 - 10 = 30 words: the instructions (2), the system message (2) and five turns (25).
    assert kept == [items[0], *items[6:]]
    sent = window.messages(request, kept)
    assert words({"messages": sent}) <= 30
    assert texts(sent)[:2] == ["Be kind.", "Keep this."]


async def test_the_estimate_fits_when_the_upstream_cannot_count(window: ContextWindow) -> None:
    items = turns(10)  # 21 bytes a message: 6 + 4 tokens each, and 3 for the reply
    kept = await window.fit({"model": "small"}, items, None)
    assert kept == items[-3:]
    assert estimate_tokens(window.messages({}, kept)) <= 40


async def test_the_newest_unit_stays_whatever_it_costs(
    window: ContextWindow, upstream: ScriptedUpstream
) -> None:
    upstream.tokenizer = words
    items = [*turns(3), said("user", " ".join(["word"] * 30))]
    assert await window.fit({"model": "tiny"}, items, None) == items[-1:]


async def test_a_call_goes_with_its_output_and_tools_take_room(
    window: ContextWindow, upstream: ScriptedUpstream
) -> None:
    upstream.tokenizer = lambda body: words(body) + (30 if body.get("tools") else 0)
    items = [said("user", "look it up please"), call("a"), result("a"), *turns(2)]
    tools = [{"type": "function", "function": {"name": "lookup"}}]

    assert await window.fit({"model": "small"}, items, None) == items  # 4 + 10 + 10 words
    # With 30 for the tools, the question (4) is not enough: the result goes, with its call.
    asked = len(upstream.questions)
    kept = await window.fit({"model": "small"}, items, tools)
    assert kept == items[3:]
    assert all((question or {})["tools"] == tools for _, question in upstream.questions[asked:])


# --- in the loop -----------------------------------------------------------------------------


async def test_the_loop_sends_the_fitted_conversation_only_when_truncation_is_auto(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    harness.configure(model_context_tokens="test-model=30")
    upstream.tokenizer = words
    history = [
        {"role": "user" if n % 2 == 0 else "assistant", "content": f"turn {n} has five words"}
        for n in range(10)
    ]
    upstream.then(text_reply("Fitted."), text_reply("Whole."))

    fitted = await harness.run({"model": "test-model", "input": history, "truncation": "auto"})
    whole = await harness.run({"model": "test-model", "input": history})

    assert fitted.final.status == whole.final.status == "completed"
    assert texts(upstream.requests[0]["messages"]) == [m["content"] for m in history[-6:]]
    assert texts(upstream.requests[1]["messages"]) == [m["content"] for m in history]
    assert len(fitted.final.request["input"]) == len(history)  # stored whole


async def test_a_refused_count_leaves_the_upstream_to_answer(
    harness: Harness, upstream: ScriptedUpstream
) -> None:
    harness.configure(model_context_tokens="test-model=5")
    upstream.then(status(400, "This model's maximum context length is 5 tokens."))
    run = await harness.run(
        {"model": "test-model", "input": "far too long for five tokens", "truncation": "auto"}
    )
    assert run.final.status == "failed"
    assert "maximum context length" in str(run.final.error)
