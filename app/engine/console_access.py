"""Who may use the operator console, and the secret its sessions are signed with.

Admins hold a key from ADMIN_API_KEYS, or a database key made with `ferry keys create
--admin` that is neither revoked nor expired. A console session names the admin by the
key's digest, never the key, and is checked again on every request: a database key
revoked (or stripped of its flag) ends its sessions at once.

The signing secret is CONSOLE_SECRET, or else one generated once and kept in the database,
so that a session made on one API replica holds on every other.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from dataclasses import dataclass

from app.config import Settings
from app.engine.api_keys import digest_of, is_expired
from app.store.api_keys import KeyStore, StoredKey
from app.store.console import ConsoleStore


@dataclass(frozen=True)
class Admin:
    digest: str  # of the key: what a session names
    label: str  # who is logged in, as the console shows it: never the key


class ConsoleAccess:
    def __init__(self, settings: Settings, keys: KeyStore, store: ConsoleStore) -> None:
        self._configured_keys = sorted(settings.admin_api_key_set)
        self._configured_digests = {digest_of(key) for key in self._configured_keys}
        self._keys = keys
        self._store = store
        self._secret = settings.console_secret or None
        self._lock = asyncio.Lock()

    @property
    def has_configured_keys(self) -> bool:
        return bool(self._configured_keys)

    async def admin_with_key(self, key: str) -> Admin | None:
        """The admin `key` makes its holder, if any."""
        # Compared with every configured key in constant time: timing tells nothing of them.
        configured = [hmac.compare_digest(key.encode(), k.encode()) for k in self._configured_keys]
        if any(configured):
            return _configured_admin(digest_of(key))
        return _admin_of(await self._keys.find(digest_of(key)))

    async def admin_with_digest(self, digest: str) -> Admin | None:
        """The admin a session names, if the key is still an admin's."""
        if digest in self._configured_digests:
            return _configured_admin(digest)
        return _admin_of(await self._keys.find(digest))

    async def session_secret(self) -> str:
        if self._secret is None:
            async with self._lock:
                if self._secret is None:
                    self._secret = await self._store.console_secret(secrets.token_urlsafe(32))
        return self._secret


def _configured_admin(digest: str) -> Admin:
    return Admin(digest=digest, label=f"ADMIN_API_KEYS key #{digest[:8]}")


def _admin_of(stored: StoredKey | None) -> Admin | None:
    if stored is None or not stored.admin:
        return None
    if stored.revoked_at is not None or is_expired(stored.expires_at):
        return None
    return Admin(digest=stored.digest, label=f"{stored.name} ({stored.prefix}…)")
