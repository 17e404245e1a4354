"""Sealing reasoning: what a blob binds to, what breaks it, rotation, and where the key
comes from."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from cryptography.fernet import Fernet

from app.engine.events import Emitter
from app.engine.sealing import BrokenSeal, KeyRing, Sealer, as_stored
from app.shapes import Item
from tests.support.memory_store import MemoryStore
from tests.unit.harness import Harness
from tests.unit.streams import RecordingSink
from tests.unit.upstream import ScriptedUpstream, text_reply

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def thought(text: str, item_id: str = "rs_1") -> Item:
    return {
        "id": item_id,
        "type": "reasoning",
        "summary": [],
        "content": [{"type": "reasoning_text", "text": text}],
        "status": "completed",
    }


def test_a_blob_opens_to_the_item_id_and_text_it_sealed() -> None:
    sealer = Sealer([OLD])
    blob = sealer.seal("owner-a", "rs_1", "Because.")
    opened = sealer.open("owner-a", blob)
    assert (opened.item_id, opened.text) == ("rs_1", "Because.")
    assert "Because" not in blob


def test_a_blob_of_another_owner_does_not_open() -> None:
    sealer = Sealer([OLD])
    with pytest.raises(BrokenSeal, match="another API key"):
        sealer.open("owner-b", sealer.seal("owner-a", "rs_1", "Mine."))


@pytest.mark.parametrize(
    "spoil",
    [
        lambda blob: blob[:-5],
        lambda blob: blob[:40] + ("x" if blob[40] != "x" else "y") + blob[41:],
        lambda blob: "",
        lambda blob: "not base64 at all ✓",
        lambda blob: Sealer([NEW]).seal("owner-a", "rs_1", "Forged."),
    ],
    ids=["truncated", "tampered", "empty", "garbage", "foreign-key"],
)
def test_a_spoiled_blob_does_not_open(spoil: object) -> None:
    sealer = Sealer([OLD])
    blob = sealer.seal("owner-a", "rs_1", "Because.")
    with pytest.raises(BrokenSeal):
        sealer.open("owner-a", spoil(blob))  # type: ignore[operator]


@pytest.mark.parametrize(
    "plaintext",
    [
        b"just text",
        json.dumps({"v": 2, "owner": "owner-a", "id": "rs_1", "text": "later"}).encode(),
        json.dumps({"owner": "owner-a", "id": "rs_1", "text": "untagged"}).encode(),
        json.dumps(["a", "list"]).encode(),
    ],
    ids=["not-json", "other-version", "no-version", "not-an-object"],
)
def test_a_blob_sealing_something_else_does_not_open(plaintext: bytes) -> None:
    blob = Fernet(OLD).encrypt(plaintext).decode()
    with pytest.raises(BrokenSeal, match="something else"):
        Sealer([OLD]).open("owner-a", blob)


def test_the_first_key_seals_and_every_key_opens() -> None:
    old_blob = Sealer([OLD]).seal("o", "rs_1", "Old.")
    rotating = Sealer([NEW, OLD])
    assert rotating.open("o", old_blob).text == "Old."
    new_blob = rotating.seal("o", "rs_1", "New.")
    assert Sealer([NEW]).open("o", new_blob).text == "New."
    with pytest.raises(BrokenSeal):
        Sealer([OLD]).open("o", new_blob)


def test_a_malformed_key_is_refused_without_being_repeated() -> None:
    secret = base64.urlsafe_b64encode(b"too short").decode()
    with pytest.raises(ValueError, match="key 2 is not a Fernet key") as info:
        Sealer([OLD, secret])
    assert secret not in str(info.value)
    with pytest.raises(ValueError):
        KeyRing([secret], MemoryStore())


def test_seal_reasoning_seals_reasoning_items_once_and_leaves_others() -> None:
    sealer = Sealer([OLD])
    item = thought("Step by step.")
    sealed = sealer.seal_reasoning(item, "o")
    assert sealer.open("o", sealed["encrypted_content"]).text == "Step by step."
    assert {k: v for k, v in sealed.items() if k != "encrypted_content"} == item
    assert "encrypted_content" not in item
    assert sealer.seal_reasoning(sealed, "o") is sealed
    message = {"id": "msg_1", "type": "message", "role": "assistant", "content": []}
    assert sealer.seal_reasoning(message, "o") is message


async def test_the_database_key_is_made_once_when_first_needed() -> None:
    store = MemoryStore()
    rings = [KeyRing([], store) for _ in range(3)]
    assert store.stored_sealing_key is None  # nothing asked yet
    sealers = await asyncio.gather(*(ring.sealer() for ring in rings for _ in range(3)))
    key = store.stored_sealing_key
    assert key is not None
    blob = sealers[0].seal("o", "rs_1", "Shared.")
    assert all(sealer.open("o", blob).text == "Shared." for sealer in sealers)
    assert Sealer([key]).open("o", blob).text == "Shared."


async def test_configured_keys_never_touch_the_database() -> None:
    store = MemoryStore()
    ring = KeyRing([NEW, OLD], store)
    blob = (await ring.sealer()).seal("o", "rs_1", "Configured.")
    assert Sealer([NEW]).open("o", blob).text == "Configured."
    assert store.stored_sealing_key is None


async def test_the_view_seals_only_when_the_request_includes_it() -> None:
    ring = KeyRing([OLD], MemoryStore())
    assert await ring.view_for({"include": []}, "o") is as_stored
    view = await ring.view_for({"include": ["reasoning.encrypted_content"]}, "o")
    assert Sealer([OLD]).open("o", view(thought("Seen."))["encrypted_content"]).text == "Seen."


async def test_the_emitter_shows_finished_items_and_responses_through_its_view() -> None:
    sink = RecordingSink()
    emitter = Emitter(sink)
    emitter.view = await KeyRing([OLD], MemoryStore()).view_for(
        {"include": ["reasoning.encrypted_content"]}, "o"
    )
    item = thought("Shown sealed.")
    message = {"id": "msg_1", "type": "message", "role": "assistant", "content": []}
    await emitter.emit("response.output_item.added", output_index=0, item=item)
    await emitter.emit("response.output_item.done", output_index=0, item=item)
    await emitter.emit("response.completed", response={"id": "resp_1", "output": [item, message]})
    added, done, completed = sink.events
    assert "encrypted_content" not in added["item"]  # still being written
    assert Sealer([OLD]).open("o", done["item"]["encrypted_content"]).text == "Shown sealed."
    [sealed, unchanged] = completed["response"]["output"]
    assert Sealer([OLD]).open("o", sealed["encrypted_content"]).text == "Shown sealed."
    assert unchanged == message


async def test_a_run_asks_for_the_key_only_when_its_request_includes_sealed_reasoning(
    harness: Harness, upstream: ScriptedUpstream, store: MemoryStore
) -> None:
    upstream.then(text_reply("Hi."))
    await harness.run({"model": "m", "input": "plain"})
    assert store.stored_sealing_key is None
    upstream.then(text_reply("Hi."))
    run = await harness.run(
        {"model": "m", "input": "sealed", "include": ["reasoning.encrypted_content"]}
    )
    assert run.final.status == "completed"
    assert store.stored_sealing_key is not None
