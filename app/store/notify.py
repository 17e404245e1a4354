"""One LISTEN connection a process, fanning notifications out to those who wait for them.

Writers of the event log `NOTIFY ferry_events, '<response id>:<last sequence number>'` in
the transaction that appends the events. A notification only says "look again": tailers
re-read the log from the last sequence number they saw, so a lost notification delays an
event, never drops it. After a reconnect every tailer is woken, since notifications sent
while the connection was down are gone.

Any change to the API keys table notifies `ferry_api_keys` (a trigger); an API process's
key book follows them, and is told when the connection comes and goes, since it may keep
keys in memory only while it hears every change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterator
from typing import Protocol

import psycopg

log = logging.getLogger(__name__)

CHANNEL = "ferry_events"
KEYS_CHANNEL = "ferry_api_keys"


class KeyFollower(Protocol):
    def listening(self) -> None:
        """The connection is up: every change from now on will be heard."""

    def changed(self) -> None:
        """The keys changed."""

    def lost(self) -> None:
        """The connection is down: changes may go unheard until `listening` again."""


class EventNotifier:
    def __init__(self, conninfo: str, *, reconnect_delay_s: float = 1.0) -> None:
        self.conninfo = conninfo
        self.reconnect_delay_s = reconnect_delay_s
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._key_followers: list[KeyFollower] = []
        self._listening = False

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def connected(self) -> bool:
        """Whether the LISTEN connection is up now: the database answers this process."""
        return self._listening

    def follow_keys(self, follower: KeyFollower) -> None:
        """Tell `follower` of every change to the API keys; listening starts now."""
        self._key_followers.append(follower)
        if self._listening:
            follower.listening()
        self._start()

    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen_forever(), name="event notifier")

    @contextlib.contextmanager
    def subscribe(self, response_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever the response's log may have grown; clear it before reading."""
        # Listening starts with the first subscriber (or key follower): a process that never
        # tails a stream (a worker) never holds a LISTEN connection.
        self._start()
        waiter = asyncio.Event()
        self._waiters[response_id].add(waiter)
        try:
            yield waiter
        finally:
            waiters = self._waiters.get(response_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[response_id]

    def _wake(self, response_id: str) -> None:
        for waiter in self._waiters.get(response_id, ()):
            waiter.set()

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.set()

    async def _listen_forever(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.conninfo, autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    await conn.execute(f"LISTEN {KEYS_CHANNEL}")
                    self._set_listening(True)
                    self._wake_all()  # anything sent while we were away is caught up now
                    async for note in conn.notifies():
                        if note.channel == KEYS_CHANNEL:
                            for follower in self._key_followers:
                                follower.changed()
                        else:
                            self._wake(note.payload.partition(":")[0])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("event notifier lost its connection; reconnecting", exc_info=True)
            finally:
                self._set_listening(False)
            await asyncio.sleep(self.reconnect_delay_s)

    def _set_listening(self, listening: bool) -> None:
        if listening == self._listening:
            return
        self._listening = listening
        for follower in self._key_followers:
            if listening:
                follower.listening()
            else:
                follower.lost()
