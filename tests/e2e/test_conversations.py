"""The Conversations API through the SDK: a conversation and its items, and responses that
run on one — its items as their context, their input and output appended when they end
(`completed` or `incomplete`; nothing when they fail or are cancelled), in every mode, one
response at a time."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest
from openai.types.conversations import Conversation

from app.config import Settings
from app.store.db import create_pool
from app.store.retention import RetentionReport, apply_retention
from tests.fakes.upstream.spy import stream_state
from tests.support.clients import sdk_client
from tests.support.reasoning import sent_upstream
from tests.support.schema import assert_valid_response
from tests.support.servers import running_api
from tests.support.sse import iter_frames
from tests.support.waiting import wait_for

SLOW = " ".join(f"w{i}" for i in range(40)) + " [[delay:150]]"
Json = dict[str, Any]


def mark(what: str) -> str:
    return f"{what}-{secrets.token_hex(4)}"


def items_of(client: openai.OpenAI, conversation_id: str) -> list[Json]:
    """Every item of the conversation, oldest first, as the API shows them (the SDK's
    automatic paging, 7 a page)."""
    pages = client.conversations.items.list(conversation_id, order="asc", limit=7)
    return [item.to_dict() for item in pages]


def texts(items: list[Json]) -> list[tuple[str, str]]:
    """(role, text) of each message item; (type, "") of any other."""
    shown = []
    for item in items:
        if item["type"] == "message":
            shown.append((item["role"], "".join(part["text"] for part in item["content"])))
        else:
            shown.append((item["type"], ""))
    return shown


def error_of(info: pytest.ExceptionInfo[openai.APIStatusError]) -> Json:
    body: Json = info.value.body  # type: ignore[assignment]
    return body


def final_status(client: openai.OpenAI, response_id: str) -> str:
    def ended() -> str | None:
        status = client.responses.retrieve(response_id).status
        return status if status not in ("queued", "in_progress") else None

    return wait_for(ended, timeout_s=30, what=f"{response_id} to end")


# --- the conversation and its items --------------------------------------------------


def test_a_conversation_is_created_read_updated_and_deleted(client: openai.OpenAI) -> None:
    raw = client.conversations.with_raw_response.create(
        metadata={"topic": "trip"}, items=[{"role": "user", "content": "Plan a trip"}]
    )
    created = raw.parse()
    assert isinstance(created, Conversation)
    assert created.id.startswith("conv_")
    assert raw.http_response.json() == {
        "id": created.id,
        "object": "conversation",
        "created_at": created.created_at,
        "metadata": {"topic": "trip"},
    }
    assert client.conversations.retrieve(created.id) == created

    updated = client.conversations.update(created.id, metadata={"topic": "hike"})
    assert updated.metadata == {"topic": "hike"}
    assert client.conversations.retrieve(created.id).metadata == {"topic": "hike"}
    assert client.conversations.update(created.id, metadata=None).metadata == {}

    deleted = client.conversations.delete(created.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (
        created.id,
        "conversation.deleted",
        True,
    )
    for call in (
        lambda: client.conversations.retrieve(created.id),
        lambda: client.conversations.items.list(created.id),
        lambda: client.conversations.delete(created.id),
    ):
        with pytest.raises(openai.NotFoundError) as info:
            call()
        assert error_of(info)["message"] == f"Conversation with id '{created.id}' not found."


def test_items_are_added_listed_read_and_deleted_in_order(client: openai.OpenAI) -> None:
    conversation = client.conversations.create(
        items=[
            {"role": "user", "content": "one"},
            {"type": "message", "role": "assistant", "content": "two"},
        ]
    )
    added = client.conversations.items.create(
        conversation.id,
        items=[
            {"role": "user", "content": "three"},
            {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "done"},
        ],
    )
    assert [item.type for item in added.data] == [
        "message",
        "function_call",
        "function_call_output",
    ]
    assert (added.first_id, added.last_id, added.has_more) == (
        added.data[0].id,
        added.data[-1].id,
        False,
    )

    items = items_of(client, conversation.id)
    assert texts(items) == [
        ("user", "one"),
        ("assistant", "two"),
        ("user", "three"),
        ("function_call", ""),
        ("function_call_output", ""),
    ]
    assert items[2:] == [item.to_dict() for item in added.data]

    newest_first = client.conversations.items.list(conversation.id, limit=2)  # desc by default
    assert [item.id for item in newest_first.data] == [items[4]["id"], items[3]["id"]]
    assert newest_first.has_more is True
    rest = client.conversations.items.list(conversation.id, limit=2, after=items[3]["id"])
    assert [item.id for item in rest.data] == [items[2]["id"], items[1]["id"]]

    one = client.conversations.items.retrieve(items[2]["id"], conversation_id=conversation.id)
    assert one.to_dict() == items[2]

    after_delete = client.conversations.items.delete(
        items[1]["id"], conversation_id=conversation.id
    )
    assert after_delete.id == conversation.id and after_delete.object == "conversation"
    assert [item["id"] for item in items_of(client, conversation.id)] == [
        items[0]["id"],
        *[item["id"] for item in items[2:]],
    ]
    with pytest.raises(openai.NotFoundError) as info:
        client.conversations.items.retrieve(items[1]["id"], conversation_id=conversation.id)
    assert error_of(info)["param"] == "item_id"


def test_paging_through_many_items_follows_the_last_id(client: openai.OpenAI) -> None:
    conversation = client.conversations.create(
        items=[{"role": "user", "content": f"m{n}"} for n in range(20)]
    )
    client.conversations.items.create(
        conversation.id, items=[{"role": "user", "content": f"m{n}"} for n in range(20, 23)]
    )
    assert [text for _, text in texts(items_of(client, conversation.id))] == [
        f"m{n}" for n in range(23)
    ]
    newest_first = [item.to_dict() for item in client.conversations.items.list(conversation.id)]
    assert [text for _, text in texts(newest_first)] == [f"m{n}" for n in reversed(range(23))]


# --- responses on a conversation -----------------------------------------------------


def test_a_response_runs_on_the_conversation_and_appends_its_input_and_output(
    client: openai.OpenAI, upstream_url: str
) -> None:
    first = mark("remember")
    conversation = client.conversations.create(
        items=[{"role": "user", "content": f"My name is {first}."}]
    )
    raw = client.responses.with_raw_response.create(
        model="demo", input="What is my name?", conversation=conversation.id
    )
    assert_valid_response(raw.http_response.json())
    response = raw.parse()
    assert response.conversation is not None and response.conversation.id == conversation.id
    assert response.output_text == "Hello! You said: What is my name?"
    assert [m["content"] for m in sent_upstream(upstream_url, first)] == [
        f"My name is {first}.",
        "What is my name?",
    ]

    items = items_of(client, conversation.id)
    assert texts(items) == [
        ("user", f"My name is {first}."),
        ("user", "What is my name?"),
        ("assistant", "Hello! You said: What is my name?"),
    ]
    assert items[2]["id"] == response.output[0].id
    [stored_input] = client.responses.input_items.list(response.id).data
    assert items[1]["id"] == stored_input.id

    # The next one, naming the conversation as an object, sees all of it.
    second = client.responses.create(
        model="demo", input="And now?", conversation={"id": conversation.id}
    )
    assert client.responses.retrieve(second.id).conversation == second.conversation
    assert [m["content"] for m in sent_upstream(upstream_url, first)][-2:] == [
        "Hello! You said: What is my name?",
        "And now?",
    ]
    assert len(items_of(client, conversation.id)) == 5


def test_a_streamed_response_appends_once_it_has_ended(client: openai.OpenAI) -> None:
    conversation = client.conversations.create()
    with client.responses.create(
        model="demo", input="stream it", conversation=conversation.id, stream=True
    ) as stream:
        events = list(stream)
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    final = events[-1].response
    assert final.conversation is not None and final.conversation.id == conversation.id
    assert texts(items_of(client, conversation.id)) == [
        ("user", "stream it"),
        ("assistant", "Hello! You said: stream it"),
    ]


@pytest.mark.usefixtures("worker")
def test_background_and_flex_responses_append_when_they_end(client: openai.OpenAI) -> None:
    conversation = client.conversations.create()
    queued = client.responses.create(
        model="demo", input="later", conversation=conversation.id, background=True
    )
    assert queued.status == "queued"
    assert queued.conversation is not None and queued.conversation.id == conversation.id
    assert final_status(client, queued.id) == "completed"

    with client.responses.create(
        model="demo", input="live", conversation=conversation.id, background=True, stream=True
    ) as stream:
        assert list(stream)[-1].type == "response.completed"

    flex = client.responses.create(
        model="demo", input="no hurry", conversation=conversation.id, service_tier="flex"
    )
    assert flex.status == "completed"

    assert texts(items_of(client, conversation.id)) == [
        ("user", "later"),
        ("assistant", "Hello! You said: later"),
        ("user", "live"),
        ("assistant", "Hello! You said: live"),
        ("user", "no hurry"),
        ("assistant", "Hello! You said: no hurry"),
    ]


def test_a_tool_loop_appends_every_item_in_order(client: openai.OpenAI) -> None:
    conversation = client.conversations.create()
    response = client.responses.create(
        model="demo",
        input='Look it up [[call:lookup_weather {"city": "Oslo"}]]',
        conversation=conversation.id,
    )
    assert [item.type for item in response.output] == [
        "function_call",
        "function_call_output",
        "message",
    ]
    items = items_of(client, conversation.id)
    assert [item["type"] for item in items] == ["message", *[i.type for i in response.output]]
    assert [item["id"] for item in items[1:]] == [item.id for item in response.output]


def test_an_incomplete_response_appends_what_it_has(client: openai.OpenAI) -> None:
    conversation = client.conversations.create()
    response = client.responses.create(
        model="demo", input="a b c d e f g", conversation=conversation.id, max_output_tokens=3
    )
    assert response.status == "incomplete"
    items = items_of(client, conversation.id)
    assert [item["id"] for item in items[1:]] == [item.id for item in response.output]


def test_a_failed_response_appends_nothing(client: openai.OpenAI) -> None:
    conversation = client.conversations.create(items=[{"role": "user", "content": "before"}])
    failed = client.responses.create(
        model="demo", input="break [[mid-error]]", conversation=conversation.id
    )
    assert failed.status == "failed"
    with pytest.raises(openai.BadRequestError):  # the upstream refuses: 400, recorded failed
        client.responses.create(
            model="demo", input="no [[status:400]]", conversation=conversation.id
        )
    assert texts(items_of(client, conversation.id)) == [("user", "before")]
    # The conversation is free again: the next response runs on it.
    assert client.responses.create(model="demo", input="after", conversation=conversation.id)
    assert len(items_of(client, conversation.id)) == 3


def test_a_cancelled_inline_stream_appends_nothing(client: openai.OpenAI, api_url: str) -> None:
    conversation = client.conversations.create()
    body = {"model": "demo", "input": SLOW, "stream": True, "conversation": conversation.id}
    with httpx.stream("POST", f"{api_url}/v1/responses", json=body, timeout=30) as reply:
        for _, event in iter_frames(reply):
            if event["type"] == "response.created":
                response_id = event["response"]["id"]
            if event["type"] == "response.output_text.delta":
                break  # the client leaves: the response is cancelled
    assert final_status(client, response_id) == "cancelled"
    assert items_of(client, conversation.id) == []
    assert client.responses.create(model="demo", input="next", conversation=conversation.id)
    assert texts(items_of(client, conversation.id)) == [
        ("user", "next"),
        ("assistant", "Hello! You said: next"),
    ]


@pytest.mark.usefixtures("worker")
def test_one_response_at_a_time_the_next_is_409_until_it_ends(
    client: openai.OpenAI, upstream_url: str
) -> None:
    conversation = client.conversations.create(items=[{"role": "user", "content": "first"}])
    marker = mark("busy")
    running = client.responses.create(
        model="demo", input=f"{marker} {SLOW}", conversation=conversation.id, background=True
    )
    wait_for(lambda: stream_state(upstream_url, marker) == "open", what="the slow response")

    with pytest.raises(openai.ConflictError) as info:
        client.responses.create(model="demo", input="meanwhile", conversation=conversation.id)
    error = error_of(info)
    assert (error["code"], error["param"], error["type"]) == (
        "conversation_locked",
        "conversation",
        "invalid_request_error",
    )
    assert running.id in error["message"]
    with pytest.raises(openai.ConflictError):
        client.conversations.items.create(
            conversation.id, items=[{"role": "user", "content": "meanwhile"}]
        )
    first_item = items_of(client, conversation.id)[0]["id"]
    with pytest.raises(openai.ConflictError):
        client.conversations.items.delete(first_item, conversation_id=conversation.id)

    assert client.responses.cancel(running.id).status == "cancelled"
    assert texts(items_of(client, conversation.id)) == [("user", "first")]
    after = client.responses.create(model="demo", input="now", conversation=conversation.id)
    assert after.status == "completed"
    assert len(items_of(client, conversation.id)) == 3


def test_a_chain_from_a_response_on_a_conversation_starts_with_its_context(
    client: openai.OpenAI, upstream_url: str
) -> None:
    first = mark("context")
    conversation = client.conversations.create(items=[{"role": "user", "content": first}])
    on_it = client.responses.create(model="demo", input="second", conversation=conversation.id)
    client.conversations.items.create(
        conversation.id, items=[{"role": "user", "content": "added after it"}]
    )

    chained = client.responses.create(model="demo", input="third", previous_response_id=on_it.id)
    assert chained.conversation is None
    # The items that were there when it was accepted; not those added after it.
    assert [m["content"] for m in sent_upstream(upstream_url, first)] == [
        first,
        "second",
        "Hello! You said: second",
        "third",
    ]
    assert len(items_of(client, conversation.id)) == 4  # a chain does not append


def test_store_false_on_a_conversation_keeps_its_items_there_only(
    client: openai.OpenAI, db: Any
) -> None:
    conversation = client.conversations.create()
    response = client.responses.create(
        model="demo", input="not kept", conversation=conversation.id, store=False
    )
    assert response.output_text == "Hello! You said: not kept"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    assert texts(items_of(client, conversation.id)) == [
        ("user", "not kept"),
        ("assistant", "Hello! You said: not kept"),
    ]
    row = db.execute("SELECT request, output FROM responses WHERE id = %s", (response.id,))
    assert row.fetchone() == {"request": {"store": False}, "output": None}


def test_items_are_stored_once_and_outlive_the_response_that_added_them(
    client: openai.OpenAI, db: Any
) -> None:
    conversation = client.conversations.create(items=[{"role": "user", "content": "direct"}])
    response = client.responses.create(model="demo", input="via", conversation=conversation.id)
    before = items_of(client, conversation.id)

    rows = db.execute(
        "SELECT item IS NOT NULL AS held, response_id, source, source_index"
        " FROM conversation_items WHERE conversation_id = %s ORDER BY position",
        (conversation.id,),
    ).fetchall()
    assert rows == [
        {"held": True, "response_id": None, "source": None, "source_index": None},
        {"held": False, "response_id": response.id, "source": "input", "source_index": 0},
        {"held": False, "response_id": response.id, "source": "output", "source_index": 0},
    ]
    # The next response's row holds its own input only, not the conversation's.
    nxt = client.responses.create(model="demo", input="again", conversation=conversation.id)
    request = db.execute("SELECT request FROM responses WHERE id = %s", (nxt.id,)).fetchone()
    assert [item["content"][0]["text"] for item in request["request"]["input"]] == ["again"]

    client.responses.delete(response.id)
    assert items_of(client, conversation.id)[:3] == before


def test_errors_name_the_parameter(client: openai.OpenAI, api_url: str) -> None:
    conversation = client.conversations.create()
    cases: list[tuple[str, str, Json, str, str | None]] = [
        ("POST", "/v1/conversations", {"items": [{}] * 21}, "items", "array_above_max_length"),
        (
            "POST",
            "/v1/conversations",
            {"items": [{"type": "nope"}]},
            "items[0].type",
            "invalid_value",
        ),
        ("POST", "/v1/conversations", {"items": "hi"}, "items", "invalid_value"),
        ("POST", "/v1/conversations", {"metadata": {"k": 1}}, "metadata.k", "invalid_value"),
        ("POST", "/v1/conversations", {"colour": "red"}, "colour", "unknown_parameter"),
        (
            "POST",
            "/v1/conversations",
            {"metadata": {f"k{n}": "v" for n in range(17)}},
            "metadata",
            "object_above_max_properties",
        ),
        (
            "POST",
            "/v1/conversations",
            {"items": [{"type": "item_reference", "id": "msg_unknown"}]},
            "items[0].id",
            None,  # as for a create's unknown reference
        ),
        (
            "POST",
            "/v1/conversations",
            {"items": [{"id": "m1", "role": "user", "content": "a"}] * 2},
            "items[1].id",
            "invalid_value",
        ),
        (
            "POST",
            f"/v1/conversations/{conversation.id}",
            {},
            "metadata",
            "missing_required_parameter",
        ),
        (
            "POST",
            f"/v1/conversations/{conversation.id}/items",
            {},
            "items",
            "missing_required_parameter",
        ),
        (
            "POST",
            f"/v1/conversations/{conversation.id}/items",
            {"items": []},
            "items",
            "empty_array",
        ),
        (
            "POST",
            f"/v1/conversations/{conversation.id}/items",
            {"items": [{"id": "x" * 200, "role": "user", "content": "a"}]},
            "items[0].id",
            "invalid_value",
        ),
        ("GET", f"/v1/conversations/{conversation.id}/items?limit=0", {}, "limit", "invalid_value"),
        (
            "GET",
            f"/v1/conversations/{conversation.id}/items?order=up",
            {},
            "order",
            "invalid_value",
        ),
        (
            "GET",
            f"/v1/conversations/{conversation.id}/items?include[]=file_search_call.results",
            {},
            "include[0]",
            "unsupported_value",
        ),
        (
            "GET",
            f"/v1/conversations/{conversation.id}/items?after=msg_nowhere",
            {},
            "after",
            "invalid_value",
        ),
        (
            "GET",
            f"/v1/conversations/{conversation.id}/items?after=%00{'x' * 3000}",
            {},
            "after",
            "invalid_value",
        ),
        (
            "POST",
            "/v1/responses",
            {"model": "demo", "conversation": conversation.id, "previous_response_id": "resp_1"},
            "conversation",
            "mutually_exclusive_parameters",
        ),
        (
            "POST",
            "/v1/responses",
            {"model": "demo", "conversation": "c1"},
            "conversation",
            "invalid_value",
        ),
        (
            "POST",
            "/v1/responses",
            {"model": "demo", "conversation": {"id": 3}},
            "conversation.id",
            "invalid_value",
        ),
        (
            "POST",
            "/v1/responses",
            {"model": "demo", "conversation": {}},
            "conversation.id",
            "missing_required_parameter",
        ),
    ]
    for method, path, body, param, code in cases:
        kwargs: Json = {"json": body} if method == "POST" else {}
        reply = httpx.request(method, f"{api_url}{path}", timeout=30, **kwargs)
        assert reply.status_code == 400, (path, body, reply.text)
        error = reply.json()["error"]
        assert (error["param"], error["code"], error["type"]) == (
            param,
            code,
            "invalid_request_error",
        ), (path, body, error)
        assert reply.headers["x-should-retry"] == "false"
    assert items_of(client, conversation.id) == []  # nothing was written


def test_input_repeating_an_item_of_the_conversation_is_refused(client: openai.OpenAI) -> None:
    conversation = client.conversations.create(
        items=[{"id": "msg_kept", "type": "message", "role": "user", "content": "hi"}]
    )
    repeat = {"id": "msg_kept", "type": "message", "role": "user", "content": "hi"}
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(
            model="demo",
            input=[{"role": "user", "content": "new"}, repeat],
            conversation=conversation.id,
        )
    assert error_of(info)["param"] == "input[1].id"
    assert error_of(info)["message"] == (
        "Duplicate item found with id msg_kept. Remove duplicate items from your input and "
        "try again."
    )
    with pytest.raises(openai.BadRequestError) as info:
        client.conversations.items.create(conversation.id, items=[repeat])
    assert error_of(info)["param"] == "items[0].id"
    assert len(items_of(client, conversation.id)) == 1


def test_unknown_conversations_and_items_are_404(client: openai.OpenAI) -> None:
    conversation = client.conversations.create()
    unknown = "conv_" + "0" * 48
    calls = [
        lambda: client.conversations.retrieve(unknown),
        lambda: client.conversations.update(unknown, metadata={}),
        lambda: client.conversations.delete(unknown),
        lambda: client.conversations.items.list(unknown),
        lambda: client.conversations.items.create(
            unknown, items=[{"role": "user", "content": "x"}]
        ),
        lambda: client.conversations.retrieve("conv_\u00e9\u00e9"),
        lambda: client.conversations.items.retrieve("msg_none", conversation_id=conversation.id),
        lambda: client.conversations.items.delete("msg_none", conversation_id=conversation.id),
    ]
    for call in calls:
        with pytest.raises(openai.NotFoundError):
            call()
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model="demo", input="hi", conversation=unknown)
    assert error_of(info)["param"] == "conversation"


def test_include_shows_sealed_reasoning_and_logprobs_only_when_asked(
    client: openai.OpenAI,
) -> None:
    conversation = client.conversations.create()
    response = client.responses.create(
        model="demo",
        input="think [[think]]",
        conversation=conversation.id,
        include=["message.output_text.logprobs"],
    )
    reasoning_id, message_id = (item.id for item in response.output)

    plain = {item["id"]: item for item in items_of(client, conversation.id)}
    assert "encrypted_content" not in plain[reasoning_id]
    assert plain[message_id]["content"][0]["logprobs"] == []

    asked = client.conversations.items.list(
        conversation.id,
        include=["reasoning.encrypted_content", "message.output_text.logprobs"],
    )
    shown = {item.id: item.to_dict() for item in asked.data}
    assert shown[reasoning_id]["encrypted_content"].startswith("gAAAAA")
    assert shown[message_id]["content"][0]["logprobs"]
    one = client.conversations.items.retrieve(
        reasoning_id, conversation_id=conversation.id, include=["reasoning.encrypted_content"]
    )
    assert one.to_dict()["encrypted_content"].startswith("gAAAAA")  # sealed anew each time


@pytest.fixture(scope="module")
def keyed_api(make_settings: Callable[..., Settings]) -> Iterator[str]:
    with running_api(make_settings(api_keys="key-alpha, key-beta")) as url:
        yield url


def test_a_conversation_is_visible_only_to_its_key(keyed_api: str) -> None:
    with (
        sdk_client(keyed_api, "key-alpha") as alpha,
        sdk_client(keyed_api, "key-beta") as beta,
    ):
        conversation = alpha.conversations.create(
            metadata={"who": "alpha"}, items=[{"role": "user", "content": "alpha's"}]
        )
        [item] = alpha.conversations.items.list(conversation.id).data
        calls: list[Callable[[], object]] = [
            lambda: beta.conversations.retrieve(conversation.id),
            lambda: beta.conversations.update(conversation.id, metadata={"who": "beta"}),
            lambda: beta.conversations.delete(conversation.id),
            lambda: beta.conversations.items.list(conversation.id),
            lambda: beta.conversations.items.create(
                conversation.id, items=[{"role": "user", "content": "beta's"}]
            ),
            lambda: beta.conversations.items.retrieve(item.id, conversation_id=conversation.id),
            lambda: beta.conversations.items.delete(item.id, conversation_id=conversation.id),
            lambda: beta.responses.create(model="demo", input="hi", conversation=conversation.id),
        ]
        for call in calls:
            with pytest.raises(openai.NotFoundError) as info:
                call()
            # As unknown as a missing one: the same answer.
            message = error_of(info)["message"]
            assert message == f"Conversation with id '{conversation.id}' not found."
        assert alpha.conversations.retrieve(conversation.id).metadata == {"who": "alpha"}
        assert texts(items_of(alpha, conversation.id)) == [("user", "alpha's")]


def test_retention_deletes_old_responses_but_not_the_items_a_conversation_holds(
    client: openai.OpenAI, db: Any, database_url: str
) -> None:
    conversation = client.conversations.create(items=[{"role": "user", "content": "kept"}])
    old = client.responses.create(model="demo", input="old turn", conversation=conversation.id)
    recent = client.responses.create(model="demo", input="new turn", conversation=conversation.id)
    before = items_of(client, conversation.id)
    db.execute(
        "UPDATE responses SET completed_at = now() - interval '40 days' WHERE id = %s", (old.id,)
    )

    asyncio.run(retention(database_url))

    with pytest.raises(openai.NotFoundError):  # deleted (by this run, or the worker's hourly one)
        client.responses.retrieve(old.id)
    assert items_of(client, conversation.id) == before
    held = db.execute(
        "SELECT item IS NOT NULL AS held, response_id FROM conversation_items"
        " WHERE conversation_id = %s ORDER BY position",
        (conversation.id,),
    ).fetchall()
    # The old response's items now live on their conversation rows; the recent one's are
    # still read from its row.
    assert held == [
        {"held": True, "response_id": None},
        {"held": True, "response_id": None},
        {"held": True, "response_id": None},
        {"held": False, "response_id": recent.id},
        {"held": False, "response_id": recent.id},
    ]
    # A response on the conversation still runs with all of it.
    assert client.responses.create(model="demo", input="later", conversation=conversation.id)
    assert len(items_of(client, conversation.id)) == 7


async def retention(database_url: str) -> RetentionReport:
    """One retention run on the suite's database, at the default ages: only responses made
    old on purpose are old enough."""
    settings = Settings(database_url=database_url, db_pool_min_size=1, db_pool_max_size=2)
    pool = create_pool(settings, name="retention-test")
    await pool.open(wait=True)
    try:
        return await apply_retention(
            pool,
            response_age_s=settings.retention_days * 86400,
            event_age_s=settings.event_retention_hours * 3600,
        )
    finally:
        await pool.close()


@pytest.mark.usefixtures("worker")
def test_twins_sent_with_one_idempotency_key_get_the_one_response(
    client: openai.OpenAI, api_url: str
) -> None:
    conversation = client.conversations.create()
    body = {
        "model": "demo",
        "input": f"twins {SLOW}",
        "conversation": conversation.id,
        "background": True,
    }
    headers = {"Idempotency-Key": mark("twins")}

    def create(_: int) -> httpx.Response:
        return httpx.post(f"{api_url}/v1/responses", json=body, headers=headers, timeout=30)

    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(create, range(8)))

    assert [reply.status_code for reply in replies] == [200] * 8, [r.text for r in replies]
    [response_id] = {reply.json()["id"] for reply in replies}
    client.responses.cancel(response_id)
