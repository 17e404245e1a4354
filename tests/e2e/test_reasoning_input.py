"""Ferry's own output items as input: reasoning reaches the upstream as `reasoning_content`,
MCP items as the calls they were, and an `item_reference` as the item it names."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import psycopg
import pytest

from app.config import Settings
from tests.support.clients import sdk_client
from tests.support.reasoning import (
    Json,
    add_reasoning_to_output,
    assistant,
    marker,
    reasoning,
    sent_upstream,
)
from tests.support.servers import running_api


def test_reasoning_goes_upstream_on_the_assistant_message_of_its_turn(
    client: openai.OpenAI, upstream_url: str
) -> None:
    mark = marker("thinking")
    items = [
        {"role": "user", "content": f"{mark} what is the weather?"},
        reasoning("I should look it up."),
        {
            "type": "function_call",
            "call_id": "call_weather",
            "name": "weather",
            "arguments": '{"city": "Oslo"}',
        },
        {"type": "function_call_output", "call_id": "call_weather", "output": "rain"},
        reasoning("Rain, so an umbrella."),
        reasoning("Keep it short."),
        assistant("Take an umbrella."),
        reasoning("A thought with no words after it."),
        {"role": "user", "content": "thanks"},
    ]
    response = client.responses.create(model="demo", input=items)  # type: ignore[arg-type]
    assert response.status == "completed"
    assert sent_upstream(upstream_url, mark)[1:] == [
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "I should look it up.",
            "tool_calls": [
                {
                    "id": "call_weather",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_weather", "content": "rain"},
        {
            "role": "assistant",
            "content": "Take an umbrella.",
            "reasoning_content": "Rain, so an umbrella.\n\nKeep it short.",
        },
        {
            "role": "assistant",
            "content": "",
            "reasoning_content": "A thought with no words after it.",
        },
        {"role": "user", "content": "thanks"},
    ]
    # Stored as sent, each with its id, for input_items.
    listed = client.responses.input_items.list(response.id, order="asc").data
    assert [item.type for item in listed] == [item.get("type", "message") for item in items]
    assert listed[1].id == items[1]["id"]


@pytest.fixture(scope="module")
def api_not_sending_reasoning(make_settings: Callable[..., Settings]) -> Iterator[str]:
    with running_api(make_settings(upstream_send_reasoning=False)) as url:
        yield url


def test_reasoning_is_not_sent_when_the_setting_is_off(
    api_not_sending_reasoning: str, upstream_url: str
) -> None:
    mark = marker("quiet")
    items = [
        {"role": "user", "content": f"{mark} hi"},
        reasoning("Private thoughts."),
        assistant("Hello."),
        reasoning("A lone thought."),
        {"role": "user", "content": "again"},
    ]
    with sdk_client(api_not_sending_reasoning) as sdk:
        assert sdk.responses.create(model="demo", input=items).status == "completed"  # type: ignore[arg-type]
    assert sent_upstream(upstream_url, mark) == [
        {"role": "user", "content": f"{mark} hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "again"},
    ]


def test_a_previous_response_chain_carries_its_reasoning(
    client: openai.OpenAI, upstream_url: str, db: psycopg.Connection[Any]
) -> None:
    mark = marker("chain")
    first = client.responses.create(
        model="demo",
        input=[  # type: ignore[list-item]
            {"role": "user", "content": f"{mark} first"},
            reasoning("Thought given as input."),
            assistant("An earlier answer."),
            {"role": "user", "content": "and now?"},
        ],
    )
    # The first response's own turn thought too, as a reasoning model's turn is stored.
    add_reasoning_to_output(db, first.id, "Thought of the first response.")
    second = client.responses.create(
        model="demo", input=f"{mark} second", previous_response_id=first.id
    )
    assert second.status == "completed"
    assert sent_upstream(upstream_url, f"{mark} second") == [
        {"role": "user", "content": f"{mark} first"},
        {
            "role": "assistant",
            "content": "An earlier answer.",
            "reasoning_content": "Thought given as input.",
        },
        {"role": "user", "content": "and now?"},
        {
            "role": "assistant",
            "content": "Hello! You said: and now?",
            "reasoning_content": "Thought of the first response.",
        },
        {"role": "user", "content": f"{mark} second"},
    ]


def test_mcp_items_are_accepted_as_input(client: openai.OpenAI, upstream_url: str) -> None:
    mark = marker("mcp")
    listing = {
        "type": "mcp_list_tools",
        "id": "mcpl_earlier",
        "server_label": "docs",
        "tools": [
            {
                "name": "search",
                "input_schema": {"type": "object"},
                "description": "Search the docs.",
                "annotations": {"readOnlyHint": True},
            }
        ],
    }
    answered = {
        "type": "mcp_call",
        "id": "mcp_answered",
        "server_label": "docs",
        "name": "search",
        "arguments": '{"q": "ferry"}',
        "output": "Ferry is a Responses API.",
        "error": None,
        "status": "completed",
    }
    failed = {
        **answered,
        "id": "mcp_failed",
        "output": None,
        "error": {"type": "mcp_protocol_error", "code": -32603, "message": "server went away"},
        "status": "failed",
    }
    items = [{"role": "user", "content": f"{mark} look it up"}, listing, answered, failed]
    response = client.responses.create(model="demo", input=items)  # type: ignore[arg-type]
    assert response.status == "completed"
    call = {"type": "function", "function": {"name": "search", "arguments": '{"q": "ferry"}'}}
    # Each call with its result; the listing has no chat equivalent and is not sent.
    assert sent_upstream(upstream_url, mark)[1:] == [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "mcp_answered", **call}]},
        {"role": "tool", "tool_call_id": "mcp_answered", "content": "Ferry is a Responses API."},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "mcp_failed", **call}]},
        {"role": "tool", "tool_call_id": "mcp_failed", "content": '{"error": "server went away"}'},
    ]
    listed = client.responses.input_items.list(response.id, order="asc").data
    assert [item.id for item in listed[1:]] == ["mcpl_earlier", "mcp_answered", "mcp_failed"]
    assert listed[1].tools[0].name == "search"  # type: ignore[union-attr]


def test_an_item_reference_stands_for_an_item_of_a_stored_response(
    client: openai.OpenAI, upstream_url: str
) -> None:
    mark = marker("ref")
    first = client.responses.create(model="demo", input=f"{mark} remember me")
    [asked] = client.responses.input_items.list(first.id).data
    [answer] = first.output
    second = client.responses.create(
        model="demo",
        input=[
            {"type": "item_reference", "id": asked.id},
            {"id": answer.id},  # the SDK may leave `type` out of a reference
            {"role": "user", "content": f"{mark} what did I say?"},
        ],
    )
    assert second.status == "completed"
    assert sent_upstream(upstream_url, f"{mark} what did I say?") == [
        {"role": "user", "content": f"{mark} remember me"},
        {"role": "assistant", "content": f"Hello! You said: {mark} remember me"},
        {"role": "user", "content": f"{mark} what did I say?"},
    ]
    # The row keeps the items themselves: the conversation outlives the first response.
    listed = client.responses.input_items.list(second.id, order="asc").data
    assert [(item.type, item.id) for item in listed[:2]] == [
        ("message", asked.id),
        ("message", answer.id),
    ]
    client.responses.delete(first.id)
    third = client.responses.create(
        model="demo", input=f"{mark} still there?", previous_response_id=second.id
    )
    assert third.status == "completed"
    assert sent_upstream(upstream_url, f"{mark} still there?")[0] == {
        "role": "user",
        "content": f"{mark} remember me",
    }


@pytest.mark.parametrize(
    "item_id", ["msg_0000000000000000000000000000000000000000000000", "not an id at all"]
)
def test_an_unknown_item_reference_is_400(api_url: str, item_id: str) -> None:
    body = {
        "model": "demo",
        "input": [{"role": "user", "content": "hi"}, {"type": "item_reference", "id": item_id}],
    }
    reply = httpx.post(f"{api_url}/v1/responses", json=body, timeout=10)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["param"] == "input[1].id"
    assert error["type"] == "invalid_request_error"
    assert "not found" in error["message"]


@pytest.fixture(scope="module")
def keyed_api(make_settings: Callable[..., Settings]) -> Iterator[str]:
    with running_api(make_settings(api_keys="key-ours, key-theirs")) as url:
        yield url


def test_an_item_of_another_keys_response_is_not_found(keyed_api: str) -> None:
    with sdk_client(keyed_api, "key-ours") as ours, sdk_client(keyed_api, "key-theirs") as theirs:
        mine = ours.responses.create(model="demo", input="private")
        reference = [{"type": "item_reference", "id": mine.output[0].id}]
        assert ours.responses.create(model="demo", input=reference).status == "completed"  # type: ignore[arg-type]
        with pytest.raises(openai.BadRequestError) as info:
            theirs.responses.create(model="demo", input=reference)  # type: ignore[arg-type]
    assert info.value.body["param"] == "input[0].id"  # type: ignore[index]


@pytest.mark.parametrize(
    ("item", "param", "code"),
    [
        ({"type": "reasoning", "id": "rs_1"}, "input[0].summary", "missing_required_parameter"),
        (
            {"type": "reasoning", "summary": [{"type": "reasoning_text", "text": "x"}]},
            "input[0].summary[0].type",
            "invalid_value",
        ),
        (
            {"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text"}]},
            "input[0].content[0].text",
            "missing_required_parameter",
        ),
        (
            {"type": "reasoning", "summary": [], "encrypted_content": 7},
            "input[0].encrypted_content",
            "invalid_type",
        ),
        (
            {"type": "reasoning", "summary": [], "status": "done"},
            "input[0].status",
            "invalid_value",
        ),
        (
            {"type": "mcp_call", "id": "mcp_1", "server_label": "s", "arguments": "{}"},
            "input[0].name",
            "missing_required_parameter",
        ),
        (
            {
                "type": "mcp_call",
                **{"id": "mcp_1", "server_label": "s", "name": "n", "arguments": "{}"},
                "error": {"type": "oops"},
            },
            "input[0].error.type",
            "invalid_value",
        ),
        (
            {"type": "mcp_list_tools", "id": "l", "server_label": "s", "tools": [{"name": "t"}]},
            "input[0].tools[0].input_schema",
            "missing_required_parameter",
        ),
        ({"type": "item_reference"}, "input[0].id", "missing_required_parameter"),
    ],
)
def test_a_malformed_item_is_400_naming_its_field(
    api_url: str, item: Json, param: str, code: str, db: psycopg.Connection[Any]
) -> None:
    before = db.execute("SELECT count(*) AS n FROM responses").fetchone()
    reply = httpx.post(
        f"{api_url}/v1/responses", json={"model": "demo", "input": [item]}, timeout=10
    )
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert (error["param"], error["code"]) == (param, code)
    assert db.execute("SELECT count(*) AS n FROM responses").fetchone() == before


def test_an_overlong_client_item_id_is_stored_but_cannot_be_referenced(
    client: openai.OpenAI,
) -> None:
    # Random, so it does not compress: far beyond what one index entry may hold.
    overlong = f"msg_{secrets.token_hex(6000)}"
    item = {"id": overlong, "type": "message", "role": "user", "content": "long id"}
    response = client.responses.create(model="demo", input=[item])  # type: ignore[list-item]
    assert response.status == "completed"
    [stored] = client.responses.input_items.list(response.id).data
    assert stored.id == overlong
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="demo", input=[{"type": "item_reference", "id": overlong}])
    assert info.value.body["param"] == "input[0].id"  # type: ignore[index]
