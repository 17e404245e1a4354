"""The key book of an API process: keys answered from memory only while every change is
heard, forgotten on any change, and a lookup that raced a change never kept."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from app.engine.api_keys import (
    KEY_START,
    PREFIX_CHARS,
    check_name,
    digest_of,
    is_expired,
    new_key,
    owner_of_name,
)
from app.engine.errors import RequestError
from app.engine.key_book import KEPT_S, TOUCH_EVERY_S, KeyBook
from app.http.auth import owner_of
from app.store.api_keys import StoredKey


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TableOfKeys:
    """The keys table, counting reads; `hold` makes the next lookup wait until released."""

    def __init__(self) -> None:
        self.rows: dict[str, StoredKey] = {}
        self.reads = 0
        self.touched: list[str] = []
        self.hold: asyncio.Event | None = None
        self.reading = asyncio.Event()

    async def find(self, digest: str) -> StoredKey | None:
        self.reads += 1
        found = self.rows.get(digest)
        self.reading.set()
        if self.hold is not None:
            await self.hold.wait()
        return found

    async def any(self) -> bool:
        self.reads += 1
        return bool(self.rows)

    async def touch(self, key_id: str) -> None:
        self.touched.append(key_id)


def stored(key: str, name: str = "alice") -> StoredKey:
    return StoredKey(
        id=f"key_{name}",
        name=name,
        owner=owner_of_name(name),
        prefix=key[:PREFIX_CHARS],
        digest=digest_of(key),
        created_at=datetime.now(UTC),
        expires_at=None,
        revoked_at=None,
        last_used_at=None,
        max_concurrent_responses=None,
        max_requests_per_minute=None,
    )


@pytest.fixture
def table() -> TableOfKeys:
    return TableOfKeys()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def book(table: TableOfKeys, clock: Clock) -> KeyBook:
    return KeyBook(table, clock=clock)  # type: ignore[arg-type]


async def test_nothing_is_kept_until_the_book_listens(book: KeyBook, table: TableOfKeys) -> None:
    key = new_key().key
    table.rows[digest_of(key)] = stored(key)
    for _ in range(3):
        assert await book.find(key) is not None
        assert await book.any_keys() is True
    assert table.reads == 6


async def test_while_listening_a_key_is_read_once(book: KeyBook, table: TableOfKeys) -> None:
    book.listening()
    key = new_key().key
    table.rows[digest_of(key)] = stored(key)
    for _ in range(3):
        assert await book.find(key) == table.rows[digest_of(key)]
        assert await book.any_keys() is True
    assert await book.find("sk-unknown") is None
    assert await book.find("sk-unknown") is None  # an unknown key is remembered too
    assert table.reads == 3


async def test_a_change_anywhere_is_seen_on_the_next_lookup(
    book: KeyBook, table: TableOfKeys
) -> None:
    book.listening()
    key = new_key().key
    table.rows[digest_of(key)] = stored(key)
    assert (await book.find(key) or stored(key)).revoked_at is None
    table.rows[digest_of(key)] = replace(table.rows[digest_of(key)], revoked_at=datetime.now(UTC))
    book.changed()  # the notification of the revocation
    found = await book.find(key)
    assert found is not None and found.revoked_at is not None


async def test_a_key_made_after_the_api_was_open_closes_it(
    book: KeyBook, table: TableOfKeys
) -> None:
    book.listening()
    assert await book.any_keys() is False
    key = new_key().key
    table.rows[digest_of(key)] = stored(key)
    book.changed()
    assert await book.any_keys() is True


async def test_a_lost_connection_stops_the_keeping(book: KeyBook, table: TableOfKeys) -> None:
    book.listening()
    key = new_key().key
    table.rows[digest_of(key)] = stored(key)
    await book.find(key)
    book.lost()
    del table.rows[digest_of(key)]  # a change the book may not have heard of
    assert await book.find(key) is None
    assert await book.find(key) is None
    assert table.reads == 3  # every lookup reads the table until it listens again


async def test_a_lookup_that_raced_a_change_is_not_kept(book: KeyBook, table: TableOfKeys) -> None:
    book.listening()
    key = new_key().key
    table.rows[digest_of(key)] = stored(key)
    table.hold = asyncio.Event()
    lookup = asyncio.create_task(book.find(key))
    await table.reading.wait()  # the lookup has read the row, and waits for its answer
    del table.rows[digest_of(key)]
    book.changed()  # the revocation is heard while the old row is on its way
    table.hold.set()
    assert await lookup is not None  # this request was under way before the change
    table.hold = None
    assert await book.find(key) is None  # the next one sees it


async def test_nothing_is_kept_longer_than_a_while(
    book: KeyBook, table: TableOfKeys, clock: Clock
) -> None:
    book.listening()
    key = new_key().key
    await book.find(key)
    clock.now += KEPT_S + 1
    await book.find(key)
    assert table.reads == 2


async def test_last_use_is_written_at_most_once_a_minute_per_key(
    book: KeyBook, table: TableOfKeys, clock: Clock
) -> None:
    key = stored(new_key().key)
    for _ in range(5):
        book.note_use(key)
    clock.now += TOUCH_EVERY_S + 1
    book.note_use(key)
    await book.close()  # lets the writes under way finish
    assert table.touched == [key.id, key.id]


def test_a_new_key_is_random_and_only_its_digest_and_prefix_are_kept() -> None:
    first, second = new_key(), new_key()
    assert first.key != second.key
    assert first.key.startswith(KEY_START) and len(first.key) == len(KEY_START) + 48
    assert first.prefix == first.key[:PREFIX_CHARS]
    assert first.digest == digest_of(first.key) and first.key not in first.digest
    assert len(first.digest) == 64


def test_owners_of_the_two_kinds_of_keys_never_meet() -> None:
    assert owner_of_name("alice") == "name:alice"
    assert ":" not in owner_of("name:alice")  # an API_KEYS owner is a hex digest


@pytest.mark.parametrize("name", ["", "sk-lookslikeaprefix", "-dash", "has space", "x" * 65])
def test_names_that_could_not_be_told_from_prefixes_are_refused(name: str) -> None:
    with pytest.raises(RequestError):
        check_name(name)


def test_expiry_is_a_moment_in_the_past() -> None:
    now = datetime.now(UTC)
    assert not is_expired(None)
    assert not is_expired(now + timedelta(seconds=5), now)
    assert is_expired(now, now)


async def test_a_burst_of_lookups_with_nothing_kept_makes_one_read(
    book: KeyBook, table: TableOfKeys
) -> None:
    key = new_key().key
    table.rows[digest_of(key)] = stored(key)
    table.hold = asyncio.Event()
    lookups = [asyncio.create_task(book.find(key)) for _ in range(50)]
    await table.reading.wait()
    table.hold.set()
    found = await asyncio.gather(*lookups)
    assert found == [table.rows[digest_of(key)]] * 50
    assert table.reads == 1
    # Not listening, nothing is kept: the next lookup reads again.
    assert await book.find(key) is not None
    assert table.reads == 2
