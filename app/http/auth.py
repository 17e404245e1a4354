"""Bearer API keys: who is calling, as the owner their responses are filed under.

Two kinds of keys work side by side:

- keys in API_KEYS: the owner is a digest of the key, so keys never reach the database;
- keys kept in the database (`ferry keys`): the owner is the key's name (`name:<name>`),
  shared by every key of that name; such a key may be revoked or expire, and may carry
  limits (`app.engine.key_limits`).

The API is open (every caller is the owner '') only while API_KEYS is unset and no key was
ever made in the database; revoking every key locks the API, it never opens it.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from app.config import Settings
from app.engine.api_keys import is_expired
from app.engine.key_book import KeyBook
from app.engine.key_limits import admit_request
from app.http.errors import Unauthorized


@dataclass(frozen=True)
class Caller:
    owner: str  # '' when the API runs open
    # The key's limit on its owner's queued and running responses; None: none.
    max_running: int | None = None


OPEN = Caller(owner="")


def owner_of(api_key: str | None) -> str:
    """The owner of a key from API_KEYS: a digest of it, so keys never reach the database."""
    if not api_key:
        return ""
    return hashlib.sha256(api_key.encode()).hexdigest()[:32]


def _bearer(connection: HTTPConnection) -> str | None:
    scheme, _, key = connection.headers.get("authorization", "").partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key else None


def _is_env_key(key: str, api_keys: frozenset[str]) -> bool:
    # Compare against every key in constant time, so timing does not tell which prefix matched.
    return any(hmac.compare_digest(key.encode(), k.encode()) for k in api_keys)


async def authenticate(connection: HTTPConnection) -> Caller:
    """The caller of a request (or of a WebSocket handshake, and of each turn on its
    socket), or 401; a key over its requests-per-minute limit is 429."""
    settings: Settings = connection.app.state.settings
    book: KeyBook = connection.app.state.keys
    api_keys = settings.api_key_set
    key = _bearer(connection)
    if key is not None and _is_env_key(key, api_keys):
        return Caller(owner=owner_of(key))
    if not api_keys and not await book.any_keys():
        return OPEN
    if key is None:
        raise Unauthorized(
            "You didn't provide an API key. Provide it in the Authorization header "
            "(Authorization: Bearer YOUR_KEY).",
            code="missing_api_key",
        )
    # Looked up by digest: the digest of a random key tells nothing through timing.
    stored = await book.find(key)
    if stored is None:
        raise Unauthorized("Incorrect API key provided.", code="invalid_api_key")
    if stored.revoked_at is not None:
        raise Unauthorized("This API key has been revoked.", code="invalid_api_key")
    if is_expired(stored.expires_at):
        raise Unauthorized("This API key has expired.", code="invalid_api_key")
    book.note_use(stored)
    await admit_request(book.store, stored)
    return Caller(owner=stored.owner, max_running=stored.max_concurrent_responses)
