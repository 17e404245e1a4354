"""API keys kept in the database: how one is made, what is stored of it, whom it speaks for.

    sk-Ab3dEf9h…          the key: "sk-" and 48 random URL-safe characters, shown once
    sk-Ab3dEf9h           its prefix: stored and listed, to tell keys apart
    sha256(key)           its digest: stored, and looked up, instead of the key
    name:<name>           its owner: the responses made with any key of that name

A plain SHA-256 is enough for a digest: the keys are random with ~288 bits of entropy, so
nothing is gained by a slow or salted hash, and a lookup by digest is one index probe.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from app import ids
from app.engine.errors import RequestError

KEY_START = "sk-"
PREFIX_CHARS = len(KEY_START) + 8
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


@dataclass(frozen=True)
class KeyMaterial:
    key: str  # shown once to the operator, never stored or logged
    prefix: str
    digest: str


def new_key() -> KeyMaterial:
    key = KEY_START + secrets.token_urlsafe(36)
    return KeyMaterial(key=key, prefix=key[:PREFIX_CHARS], digest=digest_of(key))


def new_key_id() -> str:
    return ids.new_id("key")


def digest_of(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def owner_of_name(name: str) -> str:
    """The owner of the responses made with a key of this name.

    Derived from the name, not the key, so that a key rotated (a new key of the same name)
    or revoked and made again sees the same responses. An owner from API_KEYS is a hex
    digest, which never contains a colon: the two kinds cannot meet.
    """
    return f"name:{name}"


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name) or name.startswith(KEY_START):
        raise RequestError(
            "A key name is 1-64 letters, digits and . _ @ -, starting with a letter or "
            f"digit, and not with {KEY_START!r} (that is how prefixes start).",
            param="name",
        )
    return name


def is_expired(expires_at: datetime | None, now: datetime | None = None) -> bool:
    return expires_at is not None and expires_at <= (now or datetime.now(UTC))
