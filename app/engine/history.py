"""What `previous_response_id` brings into a request's context: the previous response, checked
when the request is accepted, and the items of its chain.
"""

from __future__ import annotations

from typing import Protocol

from app.engine.continuation import previous_not_finished, previous_not_found
from app.engine.input_resolution import ItemFinder
from app.shapes import Item
from app.store.rows import StoredResponse


class ResponseFinder(Protocol):
    async def get(self, response_id: str, owner: str) -> StoredResponse | None:
        """The owner's response with this id, if there is one."""
        ...


class HistoryStore(ResponseFinder, ItemFinder, Protocol):
    """What a request's context is read from: previous responses, and the items its input
    references."""


async def check_previous(
    finder: ResponseFinder, owner: str, previous_id: str | None
) -> StoredResponse | None:
    """The previous response a request names, which must be the caller's, kept, and ended;
    None when it names none."""
    if previous_id is None:
        return None
    previous = await finder.get(previous_id, owner)
    if previous is None or not previous.is_kept:  # OpenAI's answer for `store: false` too
        raise previous_not_found(previous_id)
    if not previous.is_terminal:
        raise previous_not_finished(previous)
    return previous


async def chain_items(finder: ResponseFinder, owner: str, previous_id: str | None) -> list[Item]:
    """The input and output of the previous response and of those before it, oldest first.

    The chain ends where a response was deleted since, as the loop's does.
    """
    chain: list[StoredResponse] = []
    while previous_id:
        previous = await finder.get(previous_id, owner)
        if previous is None:
            break
        chain.append(previous)
        previous_id = previous.previous_response_id
    items: list[Item] = []
    for previous in reversed(chain):
        items.extend(previous.request.get("input") or [])
        items.extend(previous.output or [])
    return items
