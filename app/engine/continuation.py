"""Continuing a conversation without reading it back: the carried items, and what a
WebSocket connection remembers between its turns.

A response created with `store: false` is forgotten when it ends, so `previous_response_id`
cannot name it over HTTP. A WebSocket connection keeps, per lane, the most recent response
it ran in memory; when that one was `store: false` it keeps its whole conversation (what
came before its input, its input, its output), and the next turn on the socket continues
from it without reading anything from storage. That turn's row *carries* the conversation
before its input (`carried_items`): a row must hold everything its run needs, because an
API process that dies mid-turn leaves the run to a worker, which has only the row. A row
of a `store: false` response is forgotten, carried items with the rest, when it ends.

A `store: true` response is not remembered: continuing it reads the chain from Postgres,
as over HTTP, and its successor's row carries nothing (the chain stays one row per turn).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from app.engine.errors import RequestError
from app.shapes import Item, JsonObject
from app.statuses import ResponseStatus
from app.store.rows import StoredResponse

#: The key of the stored request that holds the carried items (never a create parameter).
CARRIED_ITEMS = "carried_items"


def carried_items(request: JsonObject) -> list[Item] | None:
    """The conversation before the request's input that its row carries; None when the
    conversation comes from the `previous_response_id` chain instead."""
    carried = request.get(CARRIED_ITEMS)
    return list(carried) if isinstance(carried, list) else None


def whole_conversation(final: StoredResponse) -> list[Item]:
    """A response's conversation through its end: what it carried, its input, its output.

    Only for a response that carried its conversation or had none before it: a row whose
    conversation is a chain in Postgres holds just its own part of it.
    """
    request = final.request
    return [
        *(carried_items(request) or []),
        *(request.get("input") or []),
        *(final.output or []),
    ]


def previous_not_found(previous_id: str) -> RequestError:
    """OpenAI's answer for a previous response that cannot be continued from here."""
    return RequestError(
        f"Previous response with id '{previous_id}' not found.",
        param="previous_response_id",
        code="previous_response_not_found",
    )


def previous_not_finished(previous: StoredResponse) -> RequestError:
    return RequestError(
        f"Previous response with id '{previous.id}' is still {previous.status}; "
        "wait until it has finished.",
        param="previous_response_id",
        code="previous_response_not_finished",
    )


class ResponseReader(Protocol):
    async def get(self, response_id: str, owner: str) -> StoredResponse | None:
        """The owner's response with this id, if there is one."""
        ...


async def stored_conversation(reader: ResponseReader, last: StoredResponse) -> list[Item]:
    """The conversation through the stored response `last`, read from Postgres as the loop
    reads it: each response's input and output, oldest first, from the one that carried
    what came before it. A response deleted since ends the walk, as it does the loop's."""
    chain = [last]
    while carried_items(chain[-1].request) is None and chain[-1].previous_response_id:
        previous = await reader.get(chain[-1].previous_response_id, last.owner)
        if previous is None:
            break
        chain.append(previous)
    items: list[Item] = list(carried_items(chain[-1].request) or [])
    for response in reversed(chain):
        items.extend(response.request.get("input") or [])
        items.extend(response.output or [])
    return items


@dataclass(frozen=True)
class Remembered:
    """The most recent response of a lane. `conversation` is None for a stored one: it is
    continued from Postgres."""

    response_id: str
    owner: str
    conversation: list[Item] | None


#: A connection's lanes: the `stream_id` a `response.create` names, or None (the default).
Lane = str | None


@dataclass
class ConnectionMemory:
    """What one WebSocket connection remembers: per lane, the most recent response it ran.

    Nothing of it outlives the connection. Another lane's response may be continued too
    (a fork); only the lane's own failed continuation forgets the response it continued.
    """

    _by_lane: dict[Lane, Remembered] = field(default_factory=dict)

    def recall(self, owner: str, response_id: str) -> Remembered | None:
        """The remembered response with this id, if the owner may continue it."""
        for remembered in self._by_lane.values():
            if remembered.response_id == response_id and remembered.owner == owner:
                return remembered
        return None

    def carried_from(self, owner: str, previous_id: str | None) -> list[Item] | None:
        """The conversation a turn continuing `previous_id` carries, when this connection
        holds it; None when the turn continues from Postgres (or from nothing)."""
        if previous_id is None:
            return None
        remembered = self.recall(owner, previous_id)
        return None if remembered is None else remembered.conversation

    def remember(self, lane: Lane, final: StoredResponse) -> None:
        """`final` is now the lane's most recent response. A failed one is not kept: its
        conversation is a dead end, and the one it continued is forgotten with it."""
        if final.status == ResponseStatus.FAILED:
            self._by_lane.pop(lane, None)
            return
        conversation = None if final.is_kept else whole_conversation(final)
        self._by_lane[lane] = Remembered(final.id, final.owner, conversation)

    def forget(self, lane: Lane, response_id: str | None) -> None:
        """A continuation of `response_id` on this lane failed: the lane forgets it, so a
        later continuation of a `store: false` one finds nothing."""
        remembered = self._by_lane.get(lane)
        if remembered is not None and remembered.response_id == response_id:
            del self._by_lane[lane]
