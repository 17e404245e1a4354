"""Text sealed for the client to carry: a reasoning item's `encrypted_content`, and a
compaction item's.

A client that keeps no state on the server (`store: false`) carries its reasoning from turn
to turn as an opaque blob. Ferry seals the reasoning text with a server key (Fernet:
AES-CBC with an HMAC, so a blob cannot be read or altered without the key) and opens it
when the blob comes back as input. The summary a compaction makes travels the same way.

The sealed plaintext names what it seals: a version tag, its kind (a reasoning blob has
none, as before compaction existed), the owner (the API key's digest) and the item's id. A
blob moved onto another item, sent by another API key, or given as the other kind of item
does not open: another tenant cannot get a model to repeat reasoning that is not theirs,
and a reasoning blob cannot pass for a summary.

Keys: `REASONING_ENCRYPTION_KEYS`, comma-separated; the first seals, every one opens, so a
key is rotated by putting a new one first and dropping the old one once no client holds
blobs sealed with it. Unset, Ferry uses one key generated once and kept in the database,
so every replica agrees without configuration.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from app.engine.items import reasoning_text
from app.shapes import Item, JsonObject

#: The `include` value asking for sealed reasoning on the response's reasoning items.
INCLUDE_ENCRYPTED_REASONING = "reasoning.encrypted_content"
#: The tag of the sealed plaintext's layout; a blob of another layout does not open.
SEAL_VERSION = 1

#: How a finished output item is shown to the client: as stored, or with its reasoning
#: sealed. Applied where items leave the engine (events, Response objects).
ItemView = Callable[[Item], Item]


def as_stored(item: Item) -> Item:
    """The view of a response that asked for nothing more: items as they are."""
    return item


class SealKind(enum.Enum):
    """What a blob seals; the value is the `kind` its plaintext carries (none for reasoning,
    whose blobs were handed out before there was another kind)."""

    REASONING = None
    COMPACTION = "compaction"


class BrokenSeal(Exception):
    """A blob that does not open: tampered with, cut short, sealed elsewhere or for another
    item or owner. The message says which, for the logs; the client is told less."""


@dataclass(frozen=True)
class Opened:
    item_id: str
    text: str


class Sealer:
    """Seals and opens reasoning text with a ring of Fernet keys."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("a sealer needs at least one key")
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key))
            except ValueError:
                # The key is a secret: the message names its position, never the key.
                raise ValueError(
                    f"reasoning encryption key {position} is not a Fernet key "
                    "(32 url-safe base64-encoded bytes)"
                ) from None
        self._keys = MultiFernet(fernets)

    def seal(self, owner: str, item_id: str, text: str, kind: SealKind = SealKind.REASONING) -> str:
        plaintext = {"v": SEAL_VERSION, "owner": owner, "id": item_id, "text": text}
        if kind.value is not None:
            plaintext["kind"] = kind.value
        return self._keys.encrypt(json.dumps(plaintext).encode()).decode("ascii")

    def open(self, owner: str, blob: str, kind: SealKind = SealKind.REASONING) -> Opened:
        """What `blob` seals, if it was sealed by one of our keys for `owner`, as `kind`."""
        try:
            plaintext = self._keys.decrypt(blob.encode("utf-8"))
        except (InvalidToken, ValueError, UnicodeError):
            raise BrokenSeal("not sealed by any of the keys, or altered since") from None
        try:
            sealed = json.loads(plaintext)
        except ValueError:
            raise BrokenSeal("sealed something else than an item's text") from None
        if not (
            isinstance(sealed, dict)
            and sealed.get("v") == SEAL_VERSION
            and isinstance(sealed.get("id"), str)
            and isinstance(sealed.get("text"), str)
        ):
            raise BrokenSeal("sealed something else than an item's text")
        if sealed.get("kind") != kind.value:
            raise BrokenSeal(f"sealed as another kind of item than {kind.name.lower()}")
        if sealed.get("owner") != owner:
            raise BrokenSeal("sealed for another API key")
        return Opened(item_id=sealed["id"], text=sealed["text"])

    def seal_reasoning(self, item: Item, owner: str) -> Item:
        """`item` with `encrypted_content`, if it is a reasoning item without one; any other
        item as it is. The hook for every finished reasoning item a response that asked for
        `reasoning.encrypted_content` shows; applying it twice changes nothing."""
        if item.get("type") != "reasoning" or item.get("encrypted_content"):
            return item
        sealed = self.seal(owner, item["id"], reasoning_text(item))
        return {**item, "encrypted_content": sealed}


def wants_sealed_reasoning(request: JsonObject) -> bool:
    return INCLUDE_ENCRYPTED_REASONING in (request.get("include") or [])


class KeyStore(Protocol):
    async def sealing_key(self, candidate: str) -> str:
        """The key kept in the database; `candidate` becomes it if there is none yet."""
        ...


class KeyRing:
    """Where the sealer's keys come from: the settings, or else the database.

    The database key is read (made, the first time anywhere) when first needed, then kept
    for the life of the process: a process that never seals never asks.
    """

    def __init__(self, configured: list[str], store: KeyStore) -> None:
        # Built now, so that a malformed key stops the process at start, not a request.
        self._sealer = Sealer(configured) if configured else None
        self._store = store
        self._lock = asyncio.Lock()

    async def sealer(self) -> Sealer:
        if self._sealer is None:
            async with self._lock:
                if self._sealer is None:
                    key = await self._store.sealing_key(Fernet.generate_key().decode("ascii"))
                    self._sealer = Sealer([key])
        return self._sealer

    async def view_for(self, request: JsonObject, owner: str) -> ItemView:
        """How the output items of a response with this request are shown."""
        if not wants_sealed_reasoning(request):
            return as_stored
        sealer = await self.sealer()
        return functools.partial(sealer.seal_reasoning, owner=owner)


def shown(items: list[Item], view: ItemView) -> list[Item]:
    return [view(item) for item in items]
