"""`include` end to end: `message.output_text.logprobs` (with `top_logprobs`) in every mode
and every view of a response, and the values Ferry refuses, on create, GET and input_items.

The fake upstream reports a fixed log probability for each word it streams
(`token_logprobs`), so what Ferry shows can be checked entry by entry against what the
upstream sent.
"""

from __future__ import annotations

import itertools
import re
import secrets
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.upstream.replies import token_logprobs
from tests.fakes.upstream.spy import requests_mentioning
from tests.support.schema import assert_valid_events, assert_valid_response
from tests.support.sse import iter_frames, stream_events
from tests.support.waiting import wait_for

LOGPROBS: Any = ["message.output_text.logprobs"]
BUILT_IN_TOOL_OUTPUTS = [
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
]


def marked(words: str) -> tuple[str, str]:
    """An input no other test sends, and the text the fake answers it with."""
    text = f"{words} {secrets.token_hex(3)}"
    return text, f"Hello! You said: {text}"


def part_logprobs(answer: str, top: int) -> list[dict[str, Any]]:
    """What the output_text part shows: the fake's entry for each word it streamed."""
    return [token_logprobs(word, top) for word in re.findall(r"\S+\s*", answer)]


def event_logprobs(answer: str, top: int) -> list[dict[str, Any]]:
    """The same as the text events carry them: no bytes (the SDK's event Logprob)."""
    return [
        {
            "token": entry["token"],
            "logprob": entry["logprob"],
            "top_logprobs": [
                {"token": t["token"], "logprob": t["logprob"]} for t in entry["top_logprobs"]
            ],
        }
        for entry in part_logprobs(answer, top)
    ]


def output_logprobs(response: dict[str, Any]) -> list[dict[str, Any]]:
    [message] = response["output"]
    [part] = message["content"]
    logprobs: list[dict[str, Any]] = part["logprobs"]
    return logprobs


def text_event_logprobs(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [entry for e in events if e["type"] == kind for entry in e["logprobs"]]


def assert_stream_carries(events: list[dict[str, Any]], answer: str, top: int) -> None:
    """Each delta carries the entries of its tokens; the done events and the final response
    all of them."""
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert ["".join(entry["token"] for entry in d["logprobs"]) for d in deltas] == [
        d["delta"] for d in deltas
    ]
    expected = event_logprobs(answer, top)
    assert text_event_logprobs(events, "response.output_text.delta") == expected
    assert text_event_logprobs(events, "response.output_text.done") == expected
    [part_done] = [e for e in events if e["type"] == "response.content_part.done"]
    assert part_done["part"]["logprobs"] == part_logprobs(answer, top)
    [item_done] = [e for e in events if e["type"] == "response.output_item.done"]
    assert item_done["item"]["content"] == [part_done["part"]]
    assert output_logprobs(events[-1]["response"]) == part_logprobs(answer, top)
    assert_valid_events(events)


# --- logprobs in each mode -------------------------------------------------------------


def test_blocking_create_shows_the_logprobs_the_upstream_reported(
    client: openai.OpenAI, upstream_url: str
) -> None:
    text, answer = marked("blocking logprobs")
    raw = client.responses.with_raw_response.create(
        model="demo", input=text, include=LOGPROBS, top_logprobs=2
    )

    body = raw.http_response.json()
    assert_valid_response(body)
    assert output_logprobs(body) == part_logprobs(answer, 2)
    assert body["top_logprobs"] == 2
    response = raw.parse()
    [message] = response.output
    [part] = message.content  # type: ignore[union-attr]
    assert part.logprobs is not None  # type: ignore[union-attr]
    assert "".join(lp.token for lp in part.logprobs) == response.output_text  # type: ignore[union-attr]
    [sent] = requests_mentioning(upstream_url, text)
    assert (sent["body"]["logprobs"], sent["body"]["top_logprobs"]) == (True, 2)
    retrieved = client.responses.with_raw_response.retrieve(response.id).http_response.json()
    assert retrieved["output"] == body["output"]


def test_without_the_include_value_there_are_no_logprobs(
    client: openai.OpenAI, upstream_url: str
) -> None:
    text, _ = marked("no include")
    response = client.responses.create(model="demo", input=text, top_logprobs=3)

    assert response.top_logprobs == 3  # echoed as sent
    [message] = response.output
    assert message.content[0].logprobs == []  # type: ignore[union-attr]
    [sent] = requests_mentioning(upstream_url, text)
    assert "logprobs" not in sent["body"]
    assert "top_logprobs" not in sent["body"]


def test_an_inline_stream_carries_logprobs_on_its_text_events(api_url: str) -> None:
    text, answer = marked("inline stream")
    body = {"model": "demo", "input": text, "include": LOGPROBS, "top_logprobs": 1}

    events = stream_events(api_url, body)

    assert_stream_carries(events, answer, 1)


def test_the_sdk_reads_the_logprobs_of_an_inline_stream(client: openai.OpenAI) -> None:
    text, answer = marked("sdk stream")
    with client.responses.create(
        model="demo", input=text, include=LOGPROBS, top_logprobs=2, stream=True
    ) as stream:
        events = list(stream)

    tokens = [
        lp.token for e in events if e.type == "response.output_text.delta" for lp in e.logprobs
    ]
    assert "".join(tokens) == answer
    [done] = [e for e in events if e.type == "response.output_text.done"]
    assert [lp.model_dump() for lp in done.logprobs] == event_logprobs(answer, 2)
    final = events[-1].response  # type: ignore[union-attr]
    [part] = final.output[0].content  # type: ignore[union-attr]
    assert [lp.to_dict() for lp in part.logprobs] == part_logprobs(answer, 2)  # type: ignore[union-attr]


@pytest.mark.usefixtures("worker")
def test_a_background_stream_resumed_midway_and_get_show_the_logprobs(
    client: openai.OpenAI, api_url: str
) -> None:
    text, answer = marked("one two three four five [[delay:40]]")
    answer = answer.replace(" [[delay:40]]", "")
    with client.responses.create(
        model="demo", input=text, include=LOGPROBS, top_logprobs=2, background=True, stream=True
    ) as stream:
        first = [e.to_dict(mode="json") for e in itertools.islice(stream, 6)]
    response_id = first[0]["response"]["id"]

    url = f"{api_url}/v1/responses/{response_id}"
    params = {"stream": "true", "starting_after": str(first[-1]["sequence_number"])}
    with httpx.stream("GET", url, params=params, timeout=30) as rest:
        resumed = [event for _, event in iter_frames(rest)]

    events = first + resumed
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert_stream_carries(events, answer, 2)
    retrieved = client.responses.with_raw_response.retrieve(response_id, include=LOGPROBS)
    assert retrieved.http_response.json()["output"] == events[-1]["response"]["output"]


@pytest.mark.usefixtures("worker")
def test_a_background_response_polled_with_get_shows_the_logprobs(client: openai.OpenAI) -> None:
    text, answer = marked("poll me")
    queued = client.responses.create(model="demo", input=text, include=LOGPROBS, background=True)

    def finished() -> Any:
        raw = client.responses.with_raw_response.retrieve(queued.id).http_response.json()
        return raw if raw["status"] == "completed" else None

    body = wait_for(finished, timeout_s=20, what=f"{queued.id} to complete")
    assert output_logprobs(body) == part_logprobs(answer, 0)
    assert_valid_response(body)


@pytest.mark.usefixtures("worker")
def test_flex_replays_the_logprobs_of_the_finished_response(
    client: openai.OpenAI, api_url: str
) -> None:
    text, answer = marked("flex logprobs")
    blocking = client.responses.with_raw_response.create(
        model="demo", input=text, include=LOGPROBS, top_logprobs=1, service_tier="flex"
    )
    assert output_logprobs(blocking.http_response.json()) == part_logprobs(answer, 1)

    body = {
        "model": "demo",
        "input": text,
        "include": LOGPROBS,
        "top_logprobs": 1,
        "service_tier": "flex",
    }
    events = stream_events(api_url, body)

    # A replay sends the text as one delta, carrying every entry.
    assert_stream_carries(events, answer, 1)


@pytest.mark.parametrize("top_logprobs", [-1, 21, 2.5, "many"])
def test_top_logprobs_outside_0_to_20_is_a_400(api_url: str, top_logprobs: Any) -> None:
    body = {"model": "demo", "input": "hi", "include": LOGPROBS, "top_logprobs": top_logprobs}
    reply = httpx.post(f"{api_url}/v1/responses", json=body, timeout=30)

    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "top_logprobs")


# --- the other include values ----------------------------------------------------------


@pytest.mark.parametrize("value", BUILT_IN_TOOL_OUTPUTS)
def test_including_a_built_in_tools_output_is_refused_everywhere(
    client: openai.OpenAI, value: Any
) -> None:
    existing = client.responses.create(model="demo", input="exists")
    attempts = [
        lambda: client.responses.create(model="demo", input="x", include=[*LOGPROBS, value]),
        lambda: client.responses.retrieve(existing.id, include=[*LOGPROBS, value]),
        lambda: client.responses.input_items.list(existing.id, include=[*LOGPROBS, value]),
    ]
    for attempt in attempts:
        with pytest.raises(openai.BadRequestError) as info:
            attempt()
        error: Any = info.value.body
        assert error["param"] == "include[1]"
        assert error["code"] == "unsupported_value"
        assert "Ferry has no built-in" in error["message"]


@pytest.mark.parametrize("path", ["", "/input_items"])
@pytest.mark.parametrize("key", ["include[]", "include"])
def test_an_unknown_include_value_in_the_query_is_a_400(
    client: openai.OpenAI, api_url: str, path: str, key: str
) -> None:
    existing = client.responses.create(model="demo", input="exists")
    url = f"{api_url}/v1/responses/{existing.id}{path}"
    params = [(key, "message.output_text.logprobs"), (key, "everything")]

    reply = httpx.get(url, params=params, timeout=30)

    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == "include[1]"


def test_reasoning_encrypted_content_is_accepted(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="demo", input="encrypted?", include=["reasoning.encrypted_content"]
    )
    assert response.status == "completed"


@pytest.mark.parametrize("included", [True, False])
def test_input_image_urls_are_shown_with_or_without_the_include_value(
    client: openai.OpenAI, included: bool
) -> None:
    url = f"https://images.test/{secrets.token_hex(3)}.png"
    content: Any = [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": url, "detail": "low"},
    ]
    include: Any = ["message.input_image.image_url"] if included else []
    response = client.responses.create(
        model="demo", input=[{"role": "user", "content": content}], include=include
    )

    [item] = client.responses.input_items.list(response.id, include=include).data
    image = item.content[1]  # type: ignore[union-attr]
    assert (image.type, image.image_url) == ("input_image", url)  # type: ignore[union-attr]
