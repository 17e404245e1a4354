"""The engine's side of one WebSocket connection: its turns, one at a time.

Each `response.create` is accepted as a streaming create over HTTP is (admission, the
owner's limits, the same checks), run inline under a lease by the same loop, and its
events go to a sink the front end writes to the socket. What differs is continuation: the
connection remembers its most recent responses (`ConnectionMemory`), so a turn continuing a
`store: false` response it ran carries that conversation instead of reading it back, and a
`store: false` one that it does not remember is `previous_response_not_found`, as OpenAI
answers. A continuation that fails makes the lane forget the response it continued.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.engine.api_side import ApiSide
from app.engine.continuation import ConnectionMemory, Lane, stored_conversation
from app.engine.errors import RequestError
from app.engine.events import EventSink
from app.engine.request import CreateResponseRequest
from app.engine.submission import Submission
from app.shapes import Item
from app.store.rows import StoredResponse


@dataclass(frozen=True)
class Turn:
    """One `response.create` of the connection, parsed: who sent it, what it asks, and the
    lane it runs on."""

    owner: str
    request: CreateResponseRequest
    items: list[Item]
    lane: Lane = None
    max_running: int | None = None  # the caller's key's limit (see `Submission`)


class SocketSession:
    def __init__(self, service: ApiSide) -> None:
        self.service = service
        self.memory = ConnectionMemory()

    async def accept(self, turn: Turn) -> StoredResponse:
        """Insert the turn's row, as a streaming create's; a refusal of a continuation
        forgets the response it continued."""
        try:
            submission = await self._submission(turn)
            return await self.service.create_inline(submission)
        except RequestError:
            self.memory.forget(turn.lane, turn.request.previous_response_id)
            raise

    async def run(self, turn: Turn, stored: StoredResponse, sink: EventSink) -> StoredResponse:
        """Run the accepted turn to its end here, and remember how it ended."""
        final = await self.service.run_inline(stored, sink)
        if final.is_terminal:
            self.memory.remember(turn.lane, final)
        return final

    async def _submission(self, turn: Turn) -> Submission:
        request = turn.request
        if request.service_tier == "flex":
            # A turn runs here, for the socket that waits on it: not deferred to the flex
            # queue, it runs at the default tier and says so.
            request = request.model_copy(update={"service_tier": "default"})
        previous_id = request.previous_response_id
        carried = self.memory.carried_from(turn.owner, previous_id)
        if carried is None and previous_id is not None and not request.store:
            # Continuing a stored response without storing this one: its row carries the
            # chain, so that when it ends the connection can remember all of it.
            previous = await self.service.check_previous(turn.owner, previous_id)
            assert previous is not None
            carried = await stored_conversation(self.service.store, previous)
        return Submission(
            turn.owner, request, turn.items, max_running=turn.max_running, carried=carried
        )
