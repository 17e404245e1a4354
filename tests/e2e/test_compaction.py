"""POST /v1/responses/compact through the SDK: the compacted window of an input or of a
`previous_response_id` chain, the summary the fake model wrote reaching the model when the
window is sent back (inline, and through a worker), spoiled or foreign blobs refused, and
bad requests named. The fake answers the summary request as it answers any: with an echo of
the last user message, which is the summary request itself."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from app.config import Settings
from app.engine.chat.messages import SUMMARY_PREFIX
from app.engine.compaction import SUMMARY_REQUEST
from tests.fakes.upstream.spy import requests_mentioning
from tests.support.clients import sdk_client
from tests.support.processes import Command
from tests.support.reasoning import marker, sent_upstream
from tests.support.schema import assert_valid_compaction
from tests.support.servers import running_api
from tests.support.waiting import wait_for

Json = dict[str, Any]
#: What the fake model writes when asked for a summary: its echo of the request.
FAKE_SUMMARY = "Hello! You said: " + " ".join(SUMMARY_REQUEST.split())


def history(mark: str) -> list[Json]:
    return [
        {"role": "user", "content": f"{mark} We launch on Tuesday."},
        {"role": "assistant", "content": "Understood: Tuesday."},
        {"role": "user", "content": "Notify support first."},
    ]


def summary_requests(upstream_url: str, mark: str) -> list[Json]:
    """The summary requests the fake received for a conversation carrying `mark`."""
    return [
        r["body"]
        for r in requests_mentioning(upstream_url, mark)
        if r["body"]["messages"][-1]["content"] == SUMMARY_REQUEST
    ]


def compact(sdk: openai.OpenAI, **params: Any) -> Json:
    """The SDK's `responses.compact`, as the JSON it received: the window to send back.

    The SDK types the user messages of `output` as its output messages (assistant, output
    text), so dumping its parsed objects warns; the JSON is what a client carries anyway.
    """
    raw = sdk.responses.with_raw_response.compact(**params)
    parsed = raw.parse()
    wire: Json = raw.http_response.json()
    assert (parsed.id, parsed.object, len(parsed.output)) == (
        wire["id"],
        "response.compaction",
        len(wire["output"]),
    )
    assert parsed.output[-1].type == "compaction"
    assert parsed.usage.total_tokens == wire["usage"]["total_tokens"]
    return wire


def other(character: str) -> str:
    """A base64 character that is not `character`."""
    return "B" if character == "A" else "A"


def texts(items: list[Json]) -> list[str]:
    return [item["content"][0]["text"] for item in items]


def test_compact_returns_the_user_messages_and_a_sealed_summary(
    client: openai.OpenAI, upstream_url: str
) -> None:
    mark = marker("compact")
    compacted = compact(client, model="demo", input=history(mark), instructions="Plan launches.")

    assert compacted["object"] == "response.compaction"
    *kept, compaction = compacted["output"]
    assert [(item["type"], item["role"]) for item in kept] == [("message", "user")] * 2
    assert texts(kept) == [f"{mark} We launch on Tuesday.", "Notify support first."]
    assert set(compaction) == {"id", "type", "encrypted_content"}
    assert compaction["type"] == "compaction" and compaction["id"].startswith("cmp_")
    assert compaction["encrypted_content"].startswith("gAAAAA")  # a Fernet token
    assert "Tuesday" not in compaction["encrypted_content"]
    usage = compacted["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert_valid_compaction(compacted)

    [asked] = summary_requests(upstream_url, mark)
    assert [m["role"] for m in asked["messages"]] == ["system", "user", "assistant", "user", "user"]
    assert asked["messages"][0]["content"] == "Plan launches."
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(compacted["id"])  # nothing is stored


def test_the_window_sent_back_gives_the_model_the_summary(
    client: openai.OpenAI, upstream_url: str
) -> None:
    mark = marker("carry")
    window = compact(client, model="demo", input=history(mark))["output"]

    follow_up = f"{mark} And after the launch?"
    response = client.responses.create(
        model="demo", input=[*window, {"role": "user", "content": follow_up}]
    )

    assert response.status == "completed"
    sent = sent_upstream(upstream_url, follow_up)
    assert [m["content"] for m in sent] == [
        f"{mark} We launch on Tuesday.",
        "Notify support first.",
        SUMMARY_PREFIX + FAKE_SUMMARY,
        follow_up,
    ]
    # The stored input shows the item as it was given: the summary is not shown.
    listed = client.responses.input_items.list(response.id, order="asc")
    compaction = listed.data[2]
    assert compaction.type == "compaction"
    assert compaction.to_dict() == window[2]


def test_a_previous_response_chain_is_compacted_and_carried_by_a_worker(
    client: openai.OpenAI, upstream_url: str, worker: Command
) -> None:
    mark = marker("chain")
    first = client.responses.create(model="demo", input=f"{mark} First question.")
    compacted = compact(
        client, model="demo", previous_response_id=first.id, input="Second question."
    )

    [asked] = summary_requests(upstream_url, mark)
    assert [m["content"] for m in asked["messages"]] == [
        f"{mark} First question.",
        first.output_text,
        "Second question.",
        SUMMARY_REQUEST,
    ]
    assert texts(compacted["output"][:-1]) == [f"{mark} First question.", "Second question."]

    follow_up = f"{mark} Third, in the background."
    window = compacted["output"]
    queued = client.responses.create(
        model="demo", input=[*window, {"role": "user", "content": follow_up}], background=True
    )
    wait_for(
        lambda: client.responses.retrieve(queued.id).status == "completed",
        timeout_s=30,
        what="the background response to complete",
    )
    assert SUMMARY_PREFIX + FAKE_SUMMARY in [
        m["content"] for m in sent_upstream(upstream_url, follow_up)
    ]


def test_a_spoiled_or_foreign_blob_is_refused_naming_it(
    make_settings: Callable[..., Settings],
) -> None:
    with running_api(make_settings(api_keys="key-one,key-two")) as api:
        with sdk_client(api, api_key="key-one") as one, sdk_client(api, api_key="key-two") as two:
            compaction = compact(one, model="demo", input="Remember: slate.")["output"][-1]
            blob = compaction["encrypted_content"]
            for spoiled in (
                {**compaction, "encrypted_content": blob[:-8]},
                {**compaction, "encrypted_content": blob[:30] + other(blob[30]) + blob[31:]},
                {**compaction, "id": "cmp_other"},
                {"type": "reasoning", "summary": [], "encrypted_content": blob},
            ):
                reply = httpx.post(
                    f"{api}/v1/responses",
                    headers={"Authorization": "Bearer key-one"},
                    json={"model": "demo", "input": [spoiled, {"role": "user", "content": "go"}]},
                    timeout=10,
                )
                assert reply.status_code == 400, reply.text
                assert reply.json()["error"]["param"] == "input[0].encrypted_content"
                assert reply.json()["error"]["code"] == "invalid_encrypted_content"
            with pytest.raises(openai.BadRequestError) as foreign:
                two.responses.create(model="demo", input=[compaction])
            assert foreign.value.body["param"] == "input[0].encrypted_content"  # type: ignore[index]
            # Its owner may send it back, to /compact too.
            assert one.responses.create(model="demo", input=[compaction]).status == "completed"
            again = compact(one, model="demo", input=[compaction])["output"]
            assert [item["type"] for item in again] == ["compaction"]  # it summarises the old
            assert again[0]["id"] != compaction["id"]


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"input": "hi"}, "model", "missing_required_parameter"),
        ({"model": "demo"}, "input", "missing_required_parameter"),
        ({"model": "demo", "input": "hi", "store": False}, "store", "unknown_parameter"),
        ({"model": "demo", "input": [{"type": "odd"}]}, "input[0].type", "invalid_value"),
        (
            {"model": "demo", "input": "hi", "previous_response_id": "resp_missing"},
            "previous_response_id",
            "previous_response_not_found",
        ),
    ],
)
def test_a_bad_compact_request_is_a_400_naming_its_parameter(
    api_url: str, body: Json, param: str, code: str
) -> None:
    reply = httpx.post(f"{api_url}/v1/responses/compact", json=body, timeout=10)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert error["message"]


def test_an_upstream_that_cannot_be_reached_is_a_bad_gateway(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(upstream_base_url="http://127.0.0.1:9/v1", upstream_max_attempts=1)
    with running_api(settings) as api, sdk_client(api) as sdk:
        with pytest.raises(openai.InternalServerError) as failed:
            sdk.responses.compact(model="demo", input="hi")
    assert failed.value.status_code == 502
    assert failed.value.body["code"] == "upstream_error"  # type: ignore[index]
