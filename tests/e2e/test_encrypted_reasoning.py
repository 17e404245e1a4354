"""Sealed reasoning (`encrypted_content`): shown when `include` asks for it, carried back as
input by a client that keeps no state, refused when altered, and opened by every replica
and every key of a rotation.

Ferry's responses hold reasoning items once a reasoning model's turn has stored one; here a
finished response is given one in its stored output (`add_reasoning_to_output`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import psycopg
import pytest
from cryptography.fernet import Fernet
from psycopg_pool import AsyncConnectionPool

from app.config import Settings
from app.engine.sealing import Sealer
from app.store.responses import ResponseStore
from tests.support.clients import sdk_client
from tests.support.database import migrated_scratch_database
from tests.support.reasoning import Json, add_reasoning_to_output, marker, sent_upstream
from tests.support.servers import running_api

INCLUDE = ["reasoning.encrypted_content"]


def sealed_reasoning(
    sdk: openai.OpenAI, db: psycopg.Connection[Any], text: str, **create: Any
) -> Json:
    """A reasoning item holding `text` as a response that asked for sealed reasoning shows
    it (GET), with its `content` left out: the blob alone carries the text back."""
    response = sdk.responses.create(model="demo", input=marker("sealed"), include=INCLUDE, **create)
    stored = add_reasoning_to_output(db, response.id, text)
    [shown] = [i for i in sdk.responses.retrieve(response.id).output if i.type == "reasoning"]
    item = shown.model_dump(exclude_none=True)
    assert item["id"] == stored["id"]
    assert item["content"] == stored["content"]
    assert item["encrypted_content"].startswith("gAAAAA")  # a Fernet token
    return {key: value for key, value in item.items() if key != "content"}


def carry(
    sdk: openai.OpenAI, item: Json, mark: str, **create: Any
) -> openai.types.responses.Response:
    """The next turn of a client that keeps its own history: the item, then a question."""
    return sdk.responses.create(
        model="demo", input=[item, {"role": "user", "content": f"{mark} next"}], **create
    )


def refusal(api_url: str, item: Json) -> Json:
    reply = httpx.post(
        f"{api_url}/v1/responses",
        json={"model": "demo", "input": [{"role": "user", "content": "hi"}, item]},
        timeout=10,
    )
    assert reply.status_code == 400, reply.text
    error: Json = reply.json()["error"]
    return error


def test_a_client_without_stored_state_carries_its_reasoning_to_the_next_turn(
    client: openai.OpenAI, upstream_url: str
) -> None:
    # A reasoning model's turn, kept nowhere but in the client's hands.
    first = client.responses.create(
        model="demo", input=f"{marker('think')} [[think]]", include=INCLUDE, store=False
    )
    [reasoning] = [item for item in first.output if item.type == "reasoning"]
    thought = reasoning.content[0].text  # type: ignore[index]
    assert thought and reasoning.encrypted_content
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    # The next turn sends the item back with its blob alone.
    item = reasoning.model_dump(exclude_none=True)
    del item["content"]
    mark = marker("carried")
    response = carry(client, item, mark, store=False)
    assert response.status == "completed"
    assert sent_upstream(upstream_url, mark) == [
        {"role": "assistant", "content": "", "reasoning_content": thought},
        {"role": "user", "content": f"{mark} next"},
    ]


def test_without_the_include_no_reasoning_is_sealed(
    client: openai.OpenAI, db: psycopg.Connection[Any]
) -> None:
    response = client.responses.create(model="demo", input="plain")
    add_reasoning_to_output(db, response.id, "Not sealed.")
    [shown] = [i for i in client.responses.retrieve(response.id).output if i.type == "reasoning"]
    assert shown.encrypted_content is None  # type: ignore[union-attr]


def _tampered(blob: str) -> str:
    middle = len(blob) // 2
    return blob[:middle] + ("A" if blob[middle] != "A" else "B") + blob[middle + 1 :]


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(
            lambda item: {**item, "encrypted_content": _tampered(item["encrypted_content"])},
            id="tampered",
        ),
        pytest.param(
            lambda item: {**item, "encrypted_content": item["encrypted_content"][:-9]},
            id="truncated",
        ),
        pytest.param(
            lambda item: {**item, "encrypted_content": "not a sealed blob at all"}, id="garbage"
        ),
        pytest.param(
            lambda item: {
                **item,
                "encrypted_content": Sealer([Fernet.generate_key().decode()]).seal(
                    "", item["id"], "forged"
                ),
            },
            id="foreign-key",
        ),
        pytest.param(lambda item: {**item, "id": "rs_someone_else"}, id="moved-to-another-item"),
    ],
)
def test_a_spoiled_blob_is_400(
    api_url: str,
    client: openai.OpenAI,
    db: psycopg.Connection[Any],
    spoil: Callable[[Json], Json],
) -> None:
    item = sealed_reasoning(client, db, "Worth protecting.")
    before = db.execute("SELECT count(*) AS n FROM responses").fetchone()
    error = refusal(api_url, spoil(item))
    assert error["param"] == "input[1].encrypted_content"
    assert error["code"] == "invalid_encrypted_content"
    assert error["type"] == "invalid_request_error"
    assert "could not be verified" in error["message"]
    assert db.execute("SELECT count(*) AS n FROM responses").fetchone() == before


def test_an_item_without_id_takes_the_one_sealed_in_its_blob(
    client: openai.OpenAI, db: psycopg.Connection[Any], upstream_url: str
) -> None:
    item = sealed_reasoning(client, db, "Ids are optional.")
    mark = marker("no-id")
    without_id = {key: value for key, value in item.items() if key != "id"}
    response = carry(client, without_id, mark)
    assert sent_upstream(upstream_url, mark)[0]["reasoning_content"] == "Ids are optional."
    [stored, _] = client.responses.input_items.list(response.id, order="asc").data
    assert stored.id == item["id"]


@pytest.fixture(scope="module")
def keyed_api(make_settings: Callable[..., Settings]) -> Iterator[str]:
    with running_api(make_settings(api_keys="key-ours, key-theirs")) as url:
        yield url


def test_a_blob_opens_only_for_the_api_key_it_was_made_for(
    keyed_api: str, db: psycopg.Connection[Any], upstream_url: str
) -> None:
    with sdk_client(keyed_api, "key-ours") as ours, sdk_client(keyed_api, "key-theirs") as theirs:
        item = sealed_reasoning(ours, db, "Only ours.")
        mark = marker("owner")
        assert carry(ours, item, mark).status == "completed"
        assert sent_upstream(upstream_url, mark)[0]["reasoning_content"] == "Only ours."
        with pytest.raises(openai.BadRequestError) as info:
            carry(theirs, item, marker("not-theirs"))
    assert info.value.body["param"] == "input[0].encrypted_content"  # type: ignore[index]
    assert info.value.body["code"] == "invalid_encrypted_content"  # type: ignore[index]


@pytest.fixture(scope="module")
def rotation(make_settings: Callable[..., Settings]) -> Iterator[dict[str, str]]:
    """Three APIs on one database: the old key alone, the new key first with the old one
    after it (mid-rotation), and the new key alone (rotation done)."""
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with (
        running_api(make_settings(reasoning_encryption_keys=old)) as before,
        running_api(make_settings(reasoning_encryption_keys=f"{new}, {old}")) as during,
        running_api(make_settings(reasoning_encryption_keys=new)) as after,
    ):
        yield {"before": before, "during": during, "after": after}


def test_key_rotation_the_first_key_seals_every_key_opens(
    rotation: dict[str, str], db: psycopg.Connection[Any], upstream_url: str
) -> None:
    with (
        sdk_client(rotation["before"]) as before,
        sdk_client(rotation["during"]) as during,
        sdk_client(rotation["after"]) as after,
    ):
        old_blob = sealed_reasoning(before, db, "Sealed with the old key.")
        mark = marker("rotation")
        assert carry(during, old_blob, mark).status == "completed"
        assert sent_upstream(upstream_url, mark)[0]["reasoning_content"] == (
            "Sealed with the old key."
        )
        with pytest.raises(openai.BadRequestError):
            carry(after, old_blob, marker("retired"))
        new_blob = sealed_reasoning(during, db, "Sealed with the new key.")
        assert carry(after, new_blob, marker("new")).status == "completed"
        with pytest.raises(openai.BadRequestError):
            carry(before, new_blob, marker("too-new"))


def test_the_database_key_is_shared_by_two_api_processes(
    client: openai.OpenAI, second_api_url: str, db: psycopg.Connection[Any], upstream_url: str
) -> None:
    # Neither API is given keys: both use the one kept in the database.
    with sdk_client(second_api_url, timeout=30) as other:
        here = sealed_reasoning(client, db, "Sealed in this process.")
        mark = marker("replica")
        assert carry(other, here, mark).status == "completed"
        assert sent_upstream(upstream_url, mark)[0]["reasoning_content"] == (
            "Sealed in this process."
        )
        there = sealed_reasoning(other, db, "Sealed in the other process.")
        mark = marker("replica-back")
        assert carry(client, there, mark).status == "completed"
        assert sent_upstream(upstream_url, mark)[0]["reasoning_content"] == (
            "Sealed in the other process."
        )


def test_processes_asking_at_once_all_get_the_one_database_key(postgres_admin_url: str) -> None:
    async def ask_at_once(url: str, count: int) -> list[str]:
        async with AsyncConnectionPool(url, min_size=count, max_size=count, open=False) as pool:
            await pool.wait()
            stores = [ResponseStore(pool) for _ in range(count)]
            candidates = [Fernet.generate_key().decode() for _ in range(count)]
            return await asyncio.gather(
                *(store.sealing_key(key) for store, key in zip(stores, candidates, strict=True))
            )

    with migrated_scratch_database(postgres_admin_url) as url:
        keys = asyncio.run(ask_at_once(url, 8))
        assert len(set(keys)) == 1
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT key FROM reasoning_sealing_key").fetchall()
    assert rows == [(keys[0],)]
