"""Compaction: the request it takes, the summary it asks the model for, the window it answers
with, and the compaction item sent back as input: opened, refused when spoiled, and given to
the model as a summary."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from app.config import Settings
from app.engine.chat.client import UpstreamClient
from app.engine.chat.messages import SUMMARY_PREFIX, to_chat_messages
from app.engine.compaction import (
    NO_USAGE,
    SUMMARY_REQUEST,
    Compactor,
    CompactRequest,
    parse_compact_request,
)
from app.engine.context_window import ContextWindow
from app.engine.errors import RequestError, UpstreamFailed, UpstreamRefused
from app.engine.input_files import FileLimits, FileReader
from app.engine.input_resolution import resolve_input
from app.engine.items import OPENED_SUMMARY, as_shown
from app.engine.request import parse_create_request
from app.engine.sealing import BrokenSeal, KeyRing, Sealer, SealKind
from app.shapes import Item
from app.statuses import ResponseStatus
from app.store.rows import Outcome
from tests.support.memory_store import MemoryStore
from tests.unit.harness import unit_settings
from tests.unit.upstream import ScriptedUpstream, TokenUsage, status, text_reply, unreachable

OWNER = "owner-a"
KEY = Fernet.generate_key().decode()
Json = dict[str, Any]


class HistoryStore(MemoryStore):
    """The in-memory store, finding items by id as the database does (`find_item`)."""

    async def find_item(self, owner: str, item_id: str) -> Item | None:
        for row in reversed(self.responses.values()):
            if row["owner"] != owner:
                continue
            for item in [*row["request"].get("input", []), *(row["output"] or [])]:
                if item.get("id") == item_id:
                    return dict(item)
        return None


@pytest.fixture
def history() -> HistoryStore:
    return HistoryStore()


@pytest.fixture
def settings() -> Settings:
    return unit_settings(reasoning_encryption_keys=KEY)


@pytest.fixture
async def compactor(
    history: HistoryStore, upstream: ScriptedUpstream, settings: Settings
) -> AsyncIterator[Compactor]:
    client = UpstreamClient(settings, transport=httpx.MockTransport(upstream.handler))
    keys = KeyRing(settings.reasoning_key_list, history)
    yield Compactor(
        history,
        client,
        keys,
        ContextWindow(client, settings),
        settings,
        files=FileReader(FileLimits.of(settings)),
    )
    await client.aclose()


async def compacted(compactor: Compactor, body: Json, owner: str = OWNER) -> Json:
    request, items = parse_compact_request(body)
    return await compactor.compact(owner, request, items)


def conversation() -> list[Json]:
    return [
        {"role": "developer", "content": "Plan launches."},
        {"role": "user", "content": "We launch on Tuesday."},
        {"role": "assistant", "content": "Noted: Tuesday."},
        {"role": "user", "content": "Tell support first."},
    ]


async def opened(item: Json, owner: str = OWNER) -> Item:
    """The item as a create request that sends it back is accepted with it."""
    _, items = parse_create_request({"model": "m", "input": [item]})
    store = HistoryStore()
    files = FileReader(FileLimits.of(unit_settings()))
    [resolved] = await resolve_input(items, owner, store, KeyRing([KEY], store), files)
    return resolved


# --- the request ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"input": "hi"}, "model", "missing_required_parameter"),
        ({"model": "", "input": "hi"}, "model", "invalid_value"),
        ({"model": "m"}, "input", "missing_required_parameter"),
        ({"model": "m", "input": []}, "input", "missing_required_parameter"),
        ({"model": "m", "input": "hi", "stream": True}, "stream", "unknown_parameter"),
        ({"model": "m", "input": [{"type": "nope"}]}, "input[0].type", "invalid_value"),
        ({"model": "m", "input": 7}, "input", "invalid_type"),
        ({"model": "m", "input": "hi", "prompt_cache_key": "k" * 65}, "prompt_cache_key", None),
        ({"model": "m", "input": "hi", "service_tier": "cheap"}, "service_tier", None),
    ],
)
def test_a_bad_compact_request_names_its_parameter(
    body: Json, param: str, code: str | None
) -> None:
    with pytest.raises(RequestError) as refused:
        parse_compact_request(body)
    assert refused.value.param == param
    if code is not None:
        assert refused.value.code == code


def test_the_options_no_chat_upstream_takes_are_accepted() -> None:
    request, items = parse_compact_request(
        {
            "model": "m",
            "input": "hi",
            "instructions": None,
            "prompt_cache_key": "openresponses-compact-test",
            "prompt_cache_retention": "24h",
            "service_tier": "flex",
            "image": {"context_compression": "auto"},
        }
    )
    assert isinstance(request, CompactRequest)
    assert [item["role"] for item in items] == ["user"]


# --- the summary and the window --------------------------------------------------------------


async def test_the_window_is_the_user_messages_then_a_sealed_summary(
    compactor: Compactor, upstream: ScriptedUpstream
) -> None:
    upstream.then(text_reply("Launch Tuesday; ", "support first.", usage=TokenUsage(40, 6)))
    window = await compacted(
        compactor, {"model": "m", "instructions": "Be terse.", "input": conversation()}
    )

    assert window["object"] == "response.compaction"
    assert window["id"].startswith("resp_")
    *kept, compaction = window["output"]
    assert [item["content"][0]["text"] for item in kept] == [
        "We launch on Tuesday.",
        "Tell support first.",
    ]
    assert all(item["type"] == "message" and item["role"] == "user" for item in kept)
    assert set(compaction) == {"id", "type", "encrypted_content"}
    assert compaction["type"] == "compaction" and compaction["id"].startswith("cmp_")
    assert "Tuesday" not in compaction["encrypted_content"]
    assert window["usage"] == TokenUsage(40, 6).responses()

    [asked] = upstream.requests
    assert asked["model"] == "m"
    assert [m["role"] for m in asked["messages"]] == [
        "system",
        "system",
        "user",
        "assistant",
        "user",
        "user",
    ]
    assert asked["messages"][0]["content"] == "Be terse."
    assert asked["messages"][-1] == {"role": "user", "content": SUMMARY_REQUEST}
    assert "tools" not in asked


async def test_the_summary_comes_back_to_the_model_where_the_item_stands(
    compactor: Compactor, upstream: ScriptedUpstream
) -> None:
    upstream.then(text_reply("They launch on Tuesday."))
    window = await compacted(compactor, {"model": "m", "input": conversation()})
    *kept, compaction = window["output"]

    item = await opened(compaction)
    assert item[OPENED_SUMMARY] == "They launch on Tuesday."
    assert item["id"] == compaction["id"]
    assert as_shown(item) == compaction
    messages = to_chat_messages(
        None, [*kept, item, {"type": "message", "role": "user", "content": "And then?"}]
    )
    assert messages[-2] == {
        "role": "user",
        "content": SUMMARY_PREFIX + "They launch on Tuesday.",
    }
    assert messages[-1]["content"] == "And then?"


async def test_a_compaction_given_to_compact_again_is_summarised_with_the_rest(
    compactor: Compactor, upstream: ScriptedUpstream
) -> None:
    upstream.then(text_reply("Tuesday."), text_reply("Tuesday, then Friday."))
    first = await compacted(compactor, {"model": "m", "input": conversation()})
    again = [*first["output"], {"role": "user", "content": "Move it to Friday."}]
    second = await compacted(compactor, {"model": "m", "input": again})

    assert SUMMARY_PREFIX + "Tuesday." in str(upstream.requests[1]["messages"])
    texts = [item.get("content", [{}])[0].get("text") for item in second["output"][:-1]]
    assert texts == ["We launch on Tuesday.", "Tell support first.", "Move it to Friday."]
    assert (await opened(second["output"][-1]))[OPENED_SUMMARY] == "Tuesday, then Friday."


async def test_previous_response_id_compacts_the_chain_before_the_input(
    compactor: Compactor, upstream: ScriptedUpstream, history: HistoryStore
) -> None:
    earlier = history.seed(
        {"model": "m", "input": "First question."}, owner=OWNER, status=ResponseStatus.IN_PROGRESS
    )
    answer = {
        "id": "msg_answer",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": "First answer.", "annotations": []}],
    }
    await history.finish(earlier.id, Outcome(ResponseStatus.COMPLETED, [answer]))
    upstream.then(text_reply("Both questions."))

    window = await compacted(
        compactor, {"model": "m", "previous_response_id": earlier.id, "input": "Second."}
    )

    sent = [m["content"] for m in upstream.requests[0]["messages"]]
    assert sent == ["First question.", "First answer.", "Second.", SUMMARY_REQUEST]
    assert [item["content"][0]["text"] for item in window["output"][:-1]] == [
        "First question.",
        "Second.",
    ]
    with pytest.raises(RequestError) as unknown:
        await compacted(compactor, {"model": "m", "previous_response_id": earlier.id}, "other")
    assert unknown.value.code == "previous_response_not_found"


async def test_think_tags_are_left_out_of_the_summary(
    history: HistoryStore, upstream: ScriptedUpstream
) -> None:
    settings = unit_settings(reasoning_encryption_keys=KEY, think_tags_as_reasoning=True)
    client = UpstreamClient(settings, transport=httpx.MockTransport(upstream.handler))
    keys = KeyRing(settings.reasoning_key_list, history)
    compactor = Compactor(
        history,
        client,
        keys,
        ContextWindow(client, settings),
        settings,
        files=FileReader(FileLimits.of(settings)),
    )
    upstream.then(text_reply("<think>Short, then.</think>\n\n", "Tuesday."))
    try:
        window = await compacted(compactor, {"model": "m", "input": "hi"})
    finally:
        await client.aclose()
    assert (await opened(window["output"][-1]))[OPENED_SUMMARY] == "Tuesday."


async def test_usage_the_upstream_does_not_report_is_zero(
    compactor: Compactor, upstream: ScriptedUpstream
) -> None:
    upstream.then(text_reply("Summary.", usage=None))
    window = await compacted(compactor, {"model": "m", "input": "hi"})
    assert window["usage"] == NO_USAGE


async def test_an_upstream_refusal_is_the_clients_error_and_a_failure_a_bad_gateway(
    compactor: Compactor, upstream: ScriptedUpstream
) -> None:
    upstream.then(status(404, "The model `m` does not exist."))
    with pytest.raises(UpstreamRefused) as refused:
        await compacted(compactor, {"model": "m", "input": "hi"})
    assert refused.value.upstream_status == 404
    assert refused.value.response_id is None
    assert refused.value.message == "The model `m` does not exist."

    upstream.then(unreachable(), unreachable(), unreachable())
    with pytest.raises(UpstreamFailed, match="could not summarise"):
        await compacted(compactor, {"model": "m", "input": "hi"})

    upstream.then(text_reply("  "))
    with pytest.raises(UpstreamFailed, match="no summary"):
        await compacted(compactor, {"model": "m", "input": "hi"})


# --- the item as input -----------------------------------------------------------------------


def sealed(
    text: str, item_id: str = "cmp_1", owner: str = OWNER, kind: SealKind = SealKind.COMPACTION
) -> str:
    return Sealer([KEY]).seal(owner, item_id, text, kind)


async def test_a_compaction_item_without_an_id_takes_the_sealed_one() -> None:
    blob = sealed("Said.")
    item = await opened({"type": "compaction", "encrypted_content": blob, "created_by": "x"})
    assert item == {
        "type": "compaction",
        "id": "cmp_1",
        "encrypted_content": blob,
        OPENED_SUMMARY: "Said.",
    }


@pytest.mark.parametrize(
    "item",
    [
        {"type": "compaction", "id": "cmp_2", "encrypted_content": sealed("Said.")},
        {"type": "compaction", "encrypted_content": sealed("Said.")[:-6]},
        {"type": "compaction", "encrypted_content": sealed("Said.", owner="owner-b")},
        {"type": "compaction", "encrypted_content": sealed("Said.", kind=SealKind.REASONING)},
        {"type": "compaction", "encrypted_content": "not a blob"},
    ],
    ids=["other-id", "cut-short", "other-owner", "reasoning-blob", "garbage"],
)
async def test_a_spoiled_compaction_item_is_refused_naming_its_blob(item: Json) -> None:
    with pytest.raises(RequestError) as refused:
        await opened(item)
    assert refused.value.param == "input[0].encrypted_content"
    assert refused.value.code == "invalid_encrypted_content"


async def test_a_compaction_blob_does_not_pass_for_reasoning() -> None:
    reasoning = {"type": "reasoning", "summary": [], "encrypted_content": sealed("Said.")}
    with pytest.raises(RequestError) as refused:
        await opened(reasoning)
    assert refused.value.code == "invalid_encrypted_content"
    with pytest.raises(BrokenSeal, match="another kind"):
        Sealer([KEY]).open(OWNER, sealed("Said."))
    assert Sealer([KEY]).open(OWNER, sealed("Said."), SealKind.COMPACTION).text == "Said."


@pytest.mark.parametrize(
    ("item", "param"),
    [
        ({"type": "compaction"}, "input[0].encrypted_content"),
        ({"type": "compaction", "encrypted_content": 7}, "input[0].encrypted_content"),
        ({"type": "compaction", "encrypted_content": "x", "id": 7}, "input[0].id"),
        ({"type": "compaction", "encrypted_content": "x", "created_by": 7}, "input[0].created_by"),
    ],
)
def test_a_malformed_compaction_item_names_its_field(item: Json, param: str) -> None:
    with pytest.raises(RequestError) as refused:
        parse_create_request({"model": "m", "input": [item]})
    assert refused.value.param == param
