"""The database's API keys as one API process knows them: looked up once, then answered from
memory, and forgotten the moment any key changes anywhere.

Every change to the keys table (a key made, revoked, edited by hand) sends a notification
that each API process hears on its LISTEN connection (`app.store.notify`), and the book
forgets everything it knew; the next request reads the table again. So a revocation holds
from the next request in every process, with no database round trip on the requests in
between. While the LISTEN connection is down (starting, reconnecting), nothing is kept:
every lookup reads the table. A lookup that was under way when a change was heard is not
kept either (the generation counter), and nothing is kept longer than KEPT_S, in case a
notification was lost on a connection that did not notice it broke.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from app.engine.api_keys import digest_of
from app.store.api_keys import KeyStore, StoredKey

log = logging.getLogger(__name__)

KEPT_S = 60.0
# Unknown keys are remembered too (a client retrying a wrong key costs no query); bounded,
# so that a flood of made-up keys cannot grow the book without end.
MOST_KEPT = 10_000
# How often a key's last use is written, at most, per process: off the request path.
TOUCH_EVERY_S = 60.0
CLOSE_WAIT_S = 2.0

_V = TypeVar("_V")


@dataclass(frozen=True)
class _Kept(Generic[_V]):
    value: _V
    at: float


class KeyBook:
    def __init__(self, store: KeyStore, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self._clock = clock
        self._kept: dict[str, _Kept[StoredKey | None]] = {}  # by digest
        self._any: _Kept[bool] | None = None  # whether any key exists
        self._generation = 0
        self._listening = False
        self._touched: dict[str, float] = {}
        self._touches: set[asyncio.Task[None]] = set()
        self._reading: dict[str, asyncio.Future[Any]] = {}  # reads under way, by what

    # --- told by the notifier ----------------------------------------------------------

    def listening(self) -> None:
        """The LISTEN connection is up: from now on, every change is heard."""
        self._listening = True
        self.forget()

    def lost(self) -> None:
        """The LISTEN connection is down: changes may go unheard, so nothing is kept."""
        self._listening = False
        self.forget()

    def changed(self) -> None:
        self.forget()

    def forget(self) -> None:
        self._generation += 1
        self._kept.clear()
        self._any = None

    # --- asked by authentication ------------------------------------------------------

    async def any_keys(self) -> bool:
        """Whether a key was ever made: then every request needs one."""
        if self._any is not None and self._fresh(self._any):
            return self._any.value
        found, keep = await self._read_once("any", self.store.any)
        if keep:
            self._any = _Kept(found, self._clock())
        return found

    async def find(self, key: str) -> StoredKey | None:
        """The stored key `key` is, revoked or expired included; None for an unknown key."""
        digest = digest_of(key)
        kept = self._kept.get(digest)
        if kept is not None and self._fresh(kept):
            return kept.value
        found, keep = await self._read_once(digest, lambda: self.store.find(digest))
        if keep:
            if len(self._kept) >= MOST_KEPT:
                self._kept.clear()
            self._kept[digest] = _Kept(found, self._clock())
        return found

    def note_use(self, key: StoredKey) -> None:
        """Write the key's last use, at most every TOUCH_EVERY_S, in a task of its own."""
        now = self._clock()
        last = self._touched.get(key.id)
        if last is not None and now - last < TOUCH_EVERY_S:
            return
        self._touched[key.id] = now
        task = asyncio.create_task(self._touch(key.id), name=f"touch {key.prefix}")
        self._touches.add(task)
        task.add_done_callback(self._touches.discard)

    async def close(self) -> None:
        """Let the writes of last use under way finish (briefly), then drop the rest."""
        if not self._touches:
            return
        _, late = await asyncio.wait(set(self._touches), timeout=CLOSE_WAIT_S)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    # --- inside -------------------------------------------------------------------------

    def _fresh(self, kept: _Kept[_V]) -> bool:
        return self._listening and self._clock() - kept.at < KEPT_S

    async def _read_once(self, what: str, query: Callable[[], Awaitable[_V]]) -> tuple[_V, bool]:
        """`_read`, shared by every request asking for `what` while it runs: a burst of
        requests arriving with nothing kept makes one read, not one each (which would take
        every connection of the pool at once)."""
        running = self._reading.get(what)
        if running is None:
            running = asyncio.ensure_future(self._read(query))
            self._reading[what] = running
            running.add_done_callback(lambda _: self._reading.pop(what, None))
        # Shielded: a request that goes away does not cancel the read for the others.
        result: tuple[_V, bool] = await asyncio.shield(running)
        return result

    async def _read(self, query: Callable[[], Awaitable[_V]]) -> tuple[_V, bool]:
        """What `query` reads, and whether it may be kept: only if the book listened all
        the while, so that no change was heard (and missed) while it was being read."""
        generation = self._generation
        value = await query()
        return value, self._listening and generation == self._generation

    async def _touch(self, key_id: str) -> None:
        try:
            await self.store.touch(key_id)
        except Exception:
            # Only a record for the operator; the next use tries again.
            self._touched.pop(key_id, None)
            log.warning("could not record an API key's last use", exc_info=True)
