"""`truncation: "auto"` for real: the fake upstream lists `demo-small` with a context of 60
tokens (vLLM's `max_model_len`) and counts a prompt's tokens at `/tokenize` (a token a
word); MODEL_CONTEXT_TOKENS gives `demo` one. The request spy shows what reached the model:
the oldest items dropped, a tool call never apart from its output, the newest kept; with
truncation "disabled", everything, as before."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import openai

from app.config import Settings
from tests.fakes.upstream.app import SMALL_MODEL, SMALL_MODEL_CONTEXT_TOKENS
from tests.support.clients import sdk_client
from tests.support.processes import Command
from tests.support.reasoning import marker, sent_upstream
from tests.support.servers import running_api
from tests.support.waiting import wait_for

Json = dict[str, Any]
OUTPUT_ROOM = 10


def conversation(mark: str, turns: int) -> list[Any]:
    """`turns` messages of five words each, with a tool call and its result among the
    oldest; then a last question holding `mark`."""
    items: list[Json] = []
    for n in range(turns):
        role = "user" if n % 2 == 0 else "assistant"
        items.append({"role": role, "content": f"turn {n} of the talk"})
        if n == 2:
            items.append(
                {"type": "function_call", "call_id": "call_old", "name": "look", "arguments": "{}"}
            )
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": "call_old",
                    "output": "four words of tool",
                }
            )
    items.append({"role": "user", "content": f"{mark} what now?"})
    return items


def words(messages: list[Json]) -> int:
    """The prompt as the fake's tokenizer counts it."""
    return sum(len(str(m.get("content") or "").split()) for m in messages)


def assert_no_result_without_its_call(messages: list[Json]) -> None:
    called = set()
    for message in messages:
        for call in message.get("tool_calls") or []:
            called.add(call["id"])
        if message["role"] == "tool":
            assert message["tool_call_id"] in called, messages


def test_auto_drops_the_oldest_items_to_fit_the_context_the_upstream_reports(
    client: openai.OpenAI, upstream_url: str
) -> None:
    mark = marker("auto")
    items = conversation(mark, 14)
    response = client.responses.create(
        model=SMALL_MODEL,
        input=items,
        truncation="auto",
        max_output_tokens=OUTPUT_ROOM,
        instructions="Answer briefly.",
    )

    assert response.status in ("completed", "incomplete") and response.truncation == "auto"
    sent = sent_upstream(upstream_url, mark)
    budget = SMALL_MODEL_CONTEXT_TOKENS - OUTPUT_ROOM
    assert words(sent) <= budget
    assert sent[0] == {"role": "system", "content": "Answer briefly."}
    assert sent[-1]["content"] == f"{mark} what now?"
    kept = [m["content"] for m in sent[1:]]
    everything = [f"turn {n} of the talk" for n in range(14)] + [f"{mark} what now?"]
    assert kept == everything[-len(kept) :]  # the newest, in order
    # One more turn would not have fitted: only what had to go went.
    assert words(sent) + 5 > budget
    assert_no_result_without_its_call(sent)
    # Nothing of what was sent is lost: the stored input is the whole conversation.
    assert len(client.responses.input_items.list(response.id, limit=100).data) == len(items)


def test_a_call_and_its_result_go_together(client: openai.OpenAI, upstream_url: str) -> None:
    mark = marker("pair")
    # 67 words: the three turns before the call (15) are not enough to fit 50, the call's
    # result (4) is, and it goes with its call.
    items = conversation(mark, 12)
    client.responses.create(
        model=SMALL_MODEL,
        input=items,
        truncation="auto",
        max_output_tokens=OUTPUT_ROOM,
    )
    sent = sent_upstream(upstream_url, mark)
    assert_no_result_without_its_call(sent)
    assert words(sent) <= SMALL_MODEL_CONTEXT_TOKENS - OUTPUT_ROOM
    assert all(m["role"] != "tool" and "tool_calls" not in m for m in sent)
    assert sent[0]["content"] == "turn 3 of the talk"


def test_disabled_sends_everything_as_before(client: openai.OpenAI, upstream_url: str) -> None:
    mark = marker("whole")
    items = conversation(mark, 14)
    response = client.responses.create(
        model=SMALL_MODEL,
        input=items,
        max_output_tokens=OUTPUT_ROOM,
    )
    assert response.truncation == "disabled"
    sent = sent_upstream(upstream_url, mark)
    assert len(sent) == len(items)
    assert words(sent) > SMALL_MODEL_CONTEXT_TOKENS


def test_a_worker_truncates_a_background_response(
    client: openai.OpenAI, upstream_url: str, worker: Command
) -> None:
    mark = marker("worker")
    queued = client.responses.create(
        model=SMALL_MODEL,
        input=conversation(mark, 14),
        truncation="auto",
        max_output_tokens=OUTPUT_ROOM,
        background=True,
    )
    wait_for(
        lambda: client.responses.retrieve(queued.id).status in ("completed", "incomplete"),
        timeout_s=30,
        what="the background response",
    )
    sent = sent_upstream(upstream_url, mark)
    assert words(sent) <= SMALL_MODEL_CONTEXT_TOKENS - OUTPUT_ROOM
    assert sent[-1]["content"] == f"{mark} what now?"


def test_the_configured_size_of_a_model_is_used(
    make_settings: Callable[..., Settings], upstream_url: str
) -> None:
    with running_api(make_settings(model_context_tokens="demo=30")) as api, sdk_client(api) as sdk:
        mark = marker("configured")
        sdk.responses.create(
            model="demo",
            input=conversation(mark, 10),
            truncation="auto",
        )
        sent = sent_upstream(upstream_url, mark)
        assert words(sent) <= 30
        assert words(sent) + 5 > 30
        assert sent[-1]["content"] == f"{mark} what now?"
