"""The limits an API key kept in the database may carry, counted over its owner (every key of
its name, so that a rotation does not reset them):

- requests per minute: a fixed window per owner in Postgres, one upsert a request (only for
  keys with a limit), so the limit holds across every API process together;
- concurrent responses: the owner's queued and running responses, counted in the
  transaction that inserts the new one, under a lock on the owner, so two creates cannot
  both take the last place.

Past either, the request is a 429 with Retry-After, and nothing is written.
"""

from __future__ import annotations

import math

from psycopg import AsyncConnection

from app.engine.errors import Busy
from app.store.api_keys import KeyStore, StoredKey

# A running response gives its place back when it ends, which nothing here can foresee.
RUNNING_RETRY_AFTER_S = 1.0


async def admit_request(store: KeyStore, key: StoredKey) -> None:
    limit = key.max_requests_per_minute
    if limit is None:
        return
    window = await store.count_request(key.owner)
    if window.requests > limit:
        wait_s = max(math.ceil(window.seconds_left), 1)
        raise Busy(
            f"Rate limit reached for requests per minute (RPM) of API key '{key.name}': "
            f"limit {limit}. Please try again in {wait_s}s.",
            retry_after_s=wait_s,
        )


async def admit_response(
    store: KeyStore, owner: str, limit: int | None, conn: AsyncConnection
) -> None:
    """Refuse a new response when the owner has `limit` queued or running; call it in the
    transaction that inserts the response, before the insert."""
    if limit is None:
        return
    running = await store.count_running_locked(owner, conn)
    if running >= limit:
        raise Busy(
            f"Too many responses of this API key are queued or running (limit {limit}); "
            "retry when one has finished.",
            retry_after_s=RUNNING_RETRY_AFTER_S,
        )
