"""A create request as the engine accepts it: who sent it, what it asks, its input as items,
its Idempotency-Key; and the request as a response's row keeps it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from app.engine.continuation import CARRIED_ITEMS
from app.engine.request import CreateResponseRequest
from app.shapes import Item, JsonObject


class KeyTaken(Exception):
    """Another request claimed the same Idempotency-Key first; reattach to its response."""


@dataclass(frozen=True)
class Idempotency:
    key: str
    digest: str  # of the request body: the same key with another body is a conflict

    @classmethod
    def of(cls, key: str | None, body: Any) -> Idempotency | None:
        if not key:
            return None
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return cls(key=key, digest=hashlib.sha256(canonical.encode()).hexdigest())


@dataclass(frozen=True)
class Submission:
    """A create request as accepted at the door: who sent it, what it asks, its input as
    normalised items, and its Idempotency-Key if it came with one."""

    owner: str
    request: CreateResponseRequest
    items: list[Item]
    idempotency: Idempotency | None = None
    # The caller's key's limit on its owner's queued and running responses; None: none.
    max_running: int | None = None
    # The conversation before `items`, when it does not come from the previous response's
    # chain in Postgres: a WebSocket connection remembered it (`app.engine.continuation`).
    carried: list[Item] | None = None

    @property
    def service_tier(self) -> str:
        """The tier it runs in. A flex response is handed back through the database, where a
        `store: false` one keeps nothing: that one runs inline, at the default tier."""
        tier = self.request.service_tier or "auto"
        return "default" if tier == "flex" and not self.request.store else tier

    @property
    def deferred(self) -> bool:
        """Run by a worker (background or flex) rather than by this process."""
        return self.request.background or self.service_tier == "flex"


def stored_request(
    request: CreateResponseRequest, items: list[Item], carried: list[Item] | None = None
) -> JsonObject:
    """The request as kept on the row: every parameter, with `input` as normalised items,
    and the conversation before them when the row carries it."""
    data = request.model_dump(mode="json", by_alias=True, exclude={"input"})
    data["input"] = items
    if carried is not None:
        data[CARRIED_ITEMS] = carried
    return data
