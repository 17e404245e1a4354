"""A reasoning model behind Ferry, in every mode: its reasoning is a `reasoning` item before
the message, streamed as the SDK's reasoning_text events, whether the upstream sends it as
`reasoning_content` or `reasoning`, as `<think>` tags (with the setting on), or in a plain
JSON completion. The fake upstream reasons when asked with [[think…]]; a real worker runs the
deferred modes."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import (
    ResponseContentPartAddedEvent,
    ResponseContentPartDoneEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseOutputMessage,
    ResponseReasoningItem,
    ResponseReasoningTextDeltaEvent,
    ResponseReasoningTextDoneEvent,
)

from app.config import Settings
from tests.support.clients import sdk_client
from tests.support.event_types import message_events, reasoning_events
from tests.support.schema import assert_valid_events, assert_valid_response
from tests.support.servers import running_api
from tests.support.sse import iter_frames
from tests.support.waiting import wait_for

pytestmark = pytest.mark.usefixtures("worker")

# How each field style is asked of the fake upstream.
DIRECTIVES = {"reasoning_content": "[[think]]", "reasoning": "[[think:reasoning]]"}


def marked(text: str) -> str:
    """`text` with a marker no other test sends."""
    return f"{text} {secrets.token_hex(4)}"


def thought(visible: str) -> str:
    """What the fake upstream thinks before answering `visible`."""
    return f"Thinking about: {visible}"


def words(text: str) -> int:
    """How many pieces (and tokens) the fake upstream streams `text` in."""
    return len(text.split())


def as_json(events: list[Any]) -> list[dict[str, Any]]:
    return [event.to_dict(mode="json") for event in events]


def reasoning_text(item: Any) -> str:
    assert isinstance(item, ResponseReasoningItem)
    assert item.content is not None
    return "".join(part.text for part in item.content)


def assert_reasoning_then_message(response: Any, visible: str) -> None:
    """The response holds the reasoning about `visible`, then the echo of it."""
    assert response.status == "completed"
    reasoning, message = response.output
    assert isinstance(reasoning, ResponseReasoningItem)
    assert reasoning.id.startswith("rs_")
    assert reasoning.summary == []
    assert reasoning.status == "completed"
    assert reasoning_text(reasoning) == thought(visible)
    assert isinstance(message, ResponseOutputMessage)
    assert response.output_text == f"Hello! You said: {visible}"


def assert_sdk_reasoning_events(events: list[Any]) -> str:
    """The events of the one reasoning item in `events` are the SDK's typed events, each
    naming the item, its index and its one part; the reasoning text they carry."""
    added = next(e for e in events if e.type == "response.output_item.added")
    assert isinstance(added, ResponseOutputItemAddedEvent)
    assert isinstance(added.item, ResponseReasoningItem)
    assert (added.item.content, added.item.status, added.item.summary) == ([], "in_progress", [])
    at = (added.item.id, added.output_index, 0)
    start = events.index(added)
    count = sum(e.type == "response.reasoning_text.delta" for e in events)
    own = events[start : start + len(reasoning_events(count))]
    assert [e.type for e in own] == reasoning_events(count)
    part_added, *text_deltas, text_done, part_done, done = own[1:]
    assert isinstance(part_added, ResponseContentPartAddedEvent)
    assert (part_added.part.type, part_added.part.text) == ("reasoning_text", "")
    assert all(isinstance(e, ResponseReasoningTextDeltaEvent) for e in text_deltas)
    assert isinstance(text_done, ResponseReasoningTextDoneEvent)
    assert isinstance(part_done, ResponseContentPartDoneEvent)
    assert isinstance(done, ResponseOutputItemDoneEvent)
    for event in [part_added, *text_deltas, text_done, part_done]:
        assert (event.item_id, event.output_index, event.content_index) == at
    text = "".join(e.delta for e in text_deltas)
    assert text_done.text == text
    assert (part_done.part.type, part_done.part.text) == ("reasoning_text", text)
    assert reasoning_text(done.item) == text
    assert (done.item.id, done.item.status, done.output_index) == (at[0], "completed", at[1])
    return text


# --- blocking, inline stream, GET -------------------------------------------------------


@pytest.mark.parametrize("style", DIRECTIVES)
def test_blocking_response_reasons_before_it_answers(client: openai.OpenAI, style: str) -> None:
    visible = marked("blocking")

    raw = client.responses.with_raw_response.create(
        model="demo", input=f"{visible} {DIRECTIVES[style]}"
    )

    assert_valid_response(raw.http_response.json())
    response = raw.parse()
    assert_reasoning_then_message(response, visible)
    # Reasoning tokens are passed through from the upstream's completion_tokens_details.
    assert response.usage is not None
    thinking, answer = words(thought(visible)), words(f"Hello! You said: {visible}")
    assert response.usage.output_tokens_details.reasoning_tokens == thinking
    assert response.usage.output_tokens == thinking + answer
    stored = client.responses.with_raw_response.retrieve(response.id)
    assert_valid_response(stored.http_response.json())
    assert stored.parse().output == response.output
    assert stored.parse().usage == response.usage


@pytest.mark.parametrize("style", DIRECTIVES)
def test_inline_stream_sends_the_sdks_reasoning_events(client: openai.OpenAI, style: str) -> None:
    visible = marked("streamed")

    with client.responses.create(
        model="demo", input=f"{visible} {DIRECTIVES[style]}", stream=True
    ) as stream:
        events = list(stream)

    thinking, answer = words(thought(visible)), words(f"Hello! You said: {visible}")
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        *reasoning_events(thinking),
        *message_events(answer),
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert_valid_events(as_json(events))
    assert assert_sdk_reasoning_events(events) == thought(visible)
    message_added = events[2 + len(reasoning_events(thinking))]
    assert message_added.output_index == 1
    final = events[-1].response
    assert_reasoning_then_message(final, visible)
    assert client.responses.retrieve(final.id).output == final.output


def test_the_sdk_stream_helper_assembles_the_reasoning(client: openai.OpenAI) -> None:
    visible = marked("helper")

    with client.responses.stream(model="demo", input=f"{visible} [[think]]") as stream:
        deltas = [e.delta for e in stream if e.type == "response.reasoning_text.delta"]
        final = stream.get_final_response()

    assert "".join(deltas) == thought(visible)
    assert_reasoning_then_message(final, visible)


# --- background: the persisted log, live tail, resume, replay -----------------------------


def replay(base_url: str, response_id: str, after: int | None = None) -> list[dict[str, Any]]:
    """GET ?stream=true read to its end, raw."""
    params: dict[str, Any] = {"stream": "true"}
    if after is not None:
        params["starting_after"] = after
    with httpx.stream(
        "GET", f"{base_url}/v1/responses/{response_id}", params=params, timeout=30
    ) as response:
        assert response.status_code == 200, response.read()
        return [event for _, event in iter_frames(response)]


def up_to_reasoning_delta(count: int) -> Callable[[Iterator[Any]], list[Any]]:
    def read(events: Iterator[Any]) -> list[Any]:
        seen = []
        for event in events:
            seen.append(event)
            if sum(e.type == "response.reasoning_text.delta" for e in seen) == count:
                break
        return seen

    return read


def test_background_stream_resumes_in_the_middle_of_the_reasoning(
    client: openai.OpenAI, api_url: str
) -> None:
    words = " ".join(f"w{i}" for i in range(10))
    visible = marked(words)
    with client.responses.create(
        model="demo", input=f"{visible} [[think]] [[delay:40]]", background=True, stream=True
    ) as stream:
        seen = up_to_reasoning_delta(3)(iter(stream))  # then the connection is lost
    response_id = seen[0].response.id
    k = len(seen)

    with client.responses.retrieve(response_id, stream=True, starting_after=k - 1) as rest:
        resumed = list(rest)

    assert resumed[0].type == "response.reasoning_text.delta"  # mid-reasoning
    assert resumed[0].sequence_number == k
    events = [*seen, *resumed]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.type for e in events[:3]] == [
        "response.created",
        "response.queued",
        "response.in_progress",
    ]
    assert events[-1].type == "response.completed"
    assert_valid_events(as_json(events))
    assert assert_sdk_reasoning_events(events) == thought(visible)
    assert_reasoning_then_message(events[-1].response, visible)
    # The log replays the same events, during the run and after it.
    logged = replay(api_url, response_id)
    assert logged == as_json(events)
    assert replay(api_url, response_id, after=k - 1) == as_json(resumed)
    assert client.responses.retrieve(response_id).output == events[-1].response.output


def test_background_response_polled_shows_the_reasoning(client: openai.OpenAI) -> None:
    visible = marked("polled")
    queued = client.responses.create(
        model="demo", input=f"{visible} [[think:reasoning]]", background=True
    )

    def ended() -> Any:
        response = client.responses.retrieve(queued.id)
        return response if response.status not in ("queued", "in_progress") else None

    done = wait_for(ended, timeout_s=20, what=f"{queued.id} to end")
    assert_reasoning_then_message(done, visible)
    assert_valid_response(
        client.responses.with_raw_response.retrieve(queued.id).http_response.json()
    )


# --- flex ---------------------------------------------------------------------------------


def test_flex_blocking_returns_the_reasoning(client: openai.OpenAI) -> None:
    visible = marked("flex")

    raw = client.responses.with_raw_response.create(
        model="demo", input=f"{visible} [[think]]", service_tier="flex"
    )

    assert_valid_response(raw.http_response.json())
    assert_reasoning_then_message(raw.parse(), visible)


def test_flex_stream_replays_the_reasoning_as_one_delta(client: openai.OpenAI) -> None:
    visible = marked("flex stream")

    with client.responses.create(
        model="demo", input=f"{visible} [[think:reasoning]]", service_tier="flex", stream=True
    ) as stream:
        events = list(stream)

    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        *reasoning_events(1),
        *message_events(1),
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert_valid_events(as_json(events))
    assert assert_sdk_reasoning_events(events) == thought(visible)
    assert_reasoning_then_message(events[-1].response, visible)
    assert client.responses.retrieve(events[-1].response.id).output == events[-1].response.output


# --- other upstream shapes: a plain JSON completion, <think> tags --------------------------


def test_a_plain_json_completion_to_a_stream_request(client: openai.OpenAI) -> None:
    visible = marked("json")

    with client.responses.create(
        model="demo", input=f"{visible} [[no-stream]] [[think]]", stream=True
    ) as stream:
        events = list(stream)

    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        *reasoning_events(1),
        *message_events(1),
        "response.completed",
    ]
    assert_valid_events(as_json(events))
    assert_reasoning_then_message(events[-1].response, visible)
    usage = events[-1].response.usage
    assert usage is not None
    assert usage.output_tokens_details.reasoning_tokens == words(thought(visible))


def test_a_plain_json_completion_with_tool_calls(client: openai.OpenAI) -> None:
    visible = marked("json tools")

    response = client.responses.create(
        model="demo",
        input=f'{visible} [[no-stream]] [[think]] [[call:lookup_weather {{"city": "Oslo"}}]]',
    )

    assert response.status == "completed"
    assert [item.type for item in response.output] == [
        "reasoning",
        "function_call",
        "function_call_output",
        "reasoning",
        "message",
    ]
    reasoning_items = [item for item in response.output if item.type == "reasoning"]
    assert [reasoning_text(item) for item in reasoning_items] == [
        thought(visible),
        "Thinking about the tool results.",
    ]


@pytest.fixture(scope="module")
def tags_client(make_settings: Callable[..., Settings]) -> Iterator[openai.OpenAI]:
    """The SDK on an API with THINK_TAGS_AS_REASONING on."""
    with running_api(make_settings(think_tags_as_reasoning=True)) as url:
        with sdk_client(url, timeout=30) as sdk:
            yield sdk


def test_think_tags_become_a_reasoning_item_when_the_setting_is_on(
    tags_client: openai.OpenAI,
) -> None:
    visible = marked("tags")

    with tags_client.responses.create(
        model="demo", input=f"{visible} [[think:tags]]", stream=True
    ) as stream:
        events = list(stream)

    assert_valid_events(as_json(events))
    # The tags are split across chunks by the upstream; the reasoning arrives word by word.
    assert assert_sdk_reasoning_events(events) == thought(visible)
    final = events[-1].response
    assert_reasoning_then_message(final, visible)
    blocking = tags_client.responses.create(model="demo", input=f"{visible} [[think:tags]]")
    assert_reasoning_then_message(blocking, visible)


def test_think_tags_are_left_in_the_text_by_default(client: openai.OpenAI) -> None:
    visible = marked("tags")

    response = client.responses.create(model="demo", input=f"{visible} [[think:tags]]")

    assert [item.type for item in response.output] == ["message"]
    expected = f"<think>{thought(visible)}</think>\n\nHello! You said: {visible}"
    assert response.output_text == expected


def test_no_reasoning_item_without_reasoning(client: openai.OpenAI) -> None:
    with client.responses.create(model="demo", input=marked("plain"), stream=True) as stream:
        types = [e.type for e in stream]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert not [t for t in types if "reasoning" in t]
