"""One LISTEN connection a process, fanning event-log notifications out to its tailers.

Writers of the event log `NOTIFY ferry_events, '<response id>:<last sequence number>'` in
the transaction that appends the events. A notification only says "look again": tailers
re-read the log from the last sequence number they saw, so a lost notification delays an
event, never drops it. After a reconnect every tailer is woken, since notifications sent
while the connection was down are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterator

import psycopg

log = logging.getLogger(__name__)

CHANNEL = "ferry_events"


class EventNotifier:
    def __init__(self, conninfo: str, *, reconnect_delay_s: float = 1.0) -> None:
        self.conninfo = conninfo
        self.reconnect_delay_s = reconnect_delay_s
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.contextmanager
    def subscribe(self, response_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever the response's log may have grown; clear it before reading."""
        if self._task is None:
            # Listening starts with the first subscriber: a process that never tails a
            # stream (a worker) never holds a LISTEN connection.
            self._task = asyncio.create_task(self._listen_forever(), name="event notifier")
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
                    self._wake_all()  # anything sent while we were away is caught up now
                    async for note in conn.notifies():
                        self._wake(note.payload.partition(":")[0])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("event notifier lost its connection; reconnecting", exc_info=True)
            await asyncio.sleep(self.reconnect_delay_s)
