"""Waiting for one thing unless the process is stopping."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def wait_or_stop(
    awaitable: Awaitable[T], stop: asyncio.Event, timeout_s: float
) -> tuple[bool, T | None]:
    """(True, result) when `awaitable` finishes first; (False, None) on `stop` or timeout.

    The awaitable is cancelled when it loses, so pass only cancel-safe ones (a queue's
    `get`, an event's `wait`, a sleep).
    """
    task = asyncio.ensure_future(awaitable)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait(
            {task, stopper}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        stopper.cancel()
        if not task.done():
            task.cancel()
    if task in done:
        return True, task.result()
    return False, None
