"""What the front end asks of the engine: accept, run, and show responses.

The front end never touches the store directly; it goes through this service, so the
direction of calls stays http -> engine -> store.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

from app import ids
from app.config import Settings
from app.engine.assembly import assemble_output
from app.engine.errors import NotFound, RequestError
from app.engine.events import EventSink
from app.engine.loop import ResponseLoop
from app.engine.request import CreateResponseRequest
from app.engine.resource import response_object
from app.store.responses import NewResponse, ResponseStore, StoredResponse

log = logging.getLogger(__name__)


def owner_of(api_key: str | None) -> str:
    """Who owns a response: a digest of the API key, so keys never reach the database."""
    if not api_key:
        return ""
    return hashlib.sha256(api_key.encode()).hexdigest()[:32]


def stored_request(request: CreateResponseRequest, items: list[dict[str, Any]]) -> dict[str, Any]:
    """The request as kept on the row: every parameter, with `input` as normalised items."""
    data = request.model_dump(mode="json", by_alias=True, exclude={"input"})
    data["input"] = items
    return data


class ResponsesService:
    def __init__(
        self, store: ResponseStore, loop: ResponseLoop, settings: Settings, instance_id: str
    ) -> None:
        self.store = store
        self.loop = loop
        self.settings = settings
        # Names this process as the holder of the leases on the inline work it runs.
        self.instance_id = instance_id

    async def create_inline(
        self, owner: str, request: CreateResponseRequest, items: list[dict[str, Any]]
    ) -> StoredResponse:
        """Insert the row of a response this process will run now, holding its lease."""
        await self._check_previous(owner, request.previous_response_id)
        return await self.store.insert(
            NewResponse(
                id=ids.response_id(),
                owner=owner,
                status="in_progress",
                request=stored_request(request, items),
                model=request.model,
                service_tier=request.service_tier or "auto",
                background=False,
                stream=request.stream,
                previous_response_id=request.previous_response_id,
                lease_owner=self.instance_id,
                lease_ttl_s=self.settings.inline_lease_s,
            )
        )

    async def _check_previous(self, owner: str, previous_id: str | None) -> None:
        if previous_id is None:
            return
        previous = await self.store.get(previous_id, owner)
        if previous is None:
            raise RequestError(
                f"Previous response with id '{previous_id}' not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        if not previous.is_terminal:
            raise RequestError(
                f"Previous response with id '{previous_id}' is still {previous.status}; "
                "wait until it has finished.",
                param="previous_response_id",
                code="previous_response_not_finished",
            )

    async def run(self, stored: StoredResponse, sink: EventSink) -> StoredResponse:
        """Run the loop; while it runs, keep renewing the lease this process holds on it."""
        if stored.lease_owner != self.instance_id:
            return await self.loop.run(stored, sink)
        renewer = asyncio.create_task(self._renew_lease(stored.id), name=f"lease {stored.id}")
        try:
            return await self.loop.run(stored, sink)
        finally:
            renewer.cancel()

    async def _renew_lease(self, response_id: str) -> None:
        ttl = self.settings.inline_lease_s
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                await self.store.renew_lease(response_id, self.instance_id, ttl)
            except Exception:
                # A missed renewal is retried next period; the lease outlives two misses.
                log.warning("could not renew the lease", exc_info=True)

    async def get(self, owner: str, response_id: str) -> StoredResponse:
        stored = await self.store.get(response_id, owner)
        if stored is None:
            raise NotFound(f"Response with id '{response_id}' not found.", param="response_id")
        return stored

    async def present(self, stored: StoredResponse) -> dict[str, Any]:
        """The Response object of a row: its final output, or what its finished steps hold."""
        if stored.is_terminal and stored.output is not None:
            return response_object(stored, stored.output)
        steps = await self.store.steps(stored.id)
        output = assemble_output(s.result for s in steps if s.status != "in_progress")
        return response_object(stored, output)
