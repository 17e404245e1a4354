"""Conversations: what the HTTP front end asks of them (create, show, update, delete; add,
list, show and delete items), and what accepting a response on one needs (`join`).

A conversation is a list of items in order. A response that names one runs with its items
as they were when the response was accepted, followed by its own input; when it ends
`completed` or `incomplete`, its input and output are appended, in the transaction that ends
it (`app.store.conversations.append_ended_response`). One response at a time: while one is
queued or running on a conversation, another response on it, and any change to its items,
is refused with a 409 `conversation_locked`, so the items a response appends always follow
the context it ran with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, TypeVar

from psycopg import AsyncConnection
from pydantic import BaseModel, ConfigDict, ValidationError

from app import ids
from app.engine.errors import ConversationLocked, NotFound, RequestError
from app.engine.include import LOGPROBS
from app.engine.input_files import FileReader
from app.engine.input_items import invalid, normalise_input
from app.engine.input_resolution import resolve_input
from app.engine.request import check_metadata, error_from_validation
from app.engine.runtime import Runtime
from app.engine.sealing import ItemView
from app.shapes import Item, JsonObject
from app.store.conversations import ConversationStore, StoredConversation, StoredItem
from app.store.rows import NewResponse

#: A Conversation object, as `conversation_object` builds it.
ConversationObject = dict[str, Any]

#: OpenAI's limit on the items one request adds to a conversation.
MAX_ITEMS_PER_REQUEST = 20


class CreateConversationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[JsonObject] | None = None
    metadata: dict[str, str] | None = None


class UpdateConversationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metadata: dict[str, str] | None  # required; null clears it


class AddItemsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[JsonObject]


_Request = TypeVar("_Request", bound=BaseModel)


def _parse(model: type[_Request], body: Any) -> _Request:
    if not isinstance(body, dict):
        raise RequestError(
            "The request body must be a JSON object.", param=None, code="invalid_json"
        )
    try:
        parsed = model.model_validate(body)
    except ValidationError as exc:
        raise error_from_validation(exc) from None
    return parsed


def conversation_object(stored: StoredConversation) -> ConversationObject:
    return {
        "id": stored.id,
        "object": "conversation",
        "created_at": int(stored.created_at.timestamp()),
        "metadata": stored.metadata,
    }


def item_list(items: Sequence[Item], *, has_more: bool) -> JsonObject:
    """A page of items, as the SDK's `ConversationItemList` reads it."""
    return {
        "object": "list",
        "data": list(items),
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": has_more,
    }


def check_item_ids(items: Sequence[Item], taken: set[str], param: str) -> None:
    """Each item a conversation is to hold needs an id of its own there: one it does not
    hold yet (`taken`), not repeated in `items`, and short and plain enough to index."""
    seen: set[str] = set()
    for index, item in enumerate(items):
        item_id = item["id"]
        where = f"{param}[{index}].id"
        if not ids.is_well_formed(item_id):
            raise invalid(
                where, f"Invalid '{where}': an item id is 1 to 128 letters, digits, '_' or '-'."
            )
        if item_id in taken or item_id in seen:
            raise invalid(
                where,
                f"Duplicate item found with id {item_id}. Remove duplicate items from your "
                "input and try again.",
            )
        seen.add(item_id)


def _without_logprobs(item: Item) -> Item:
    """A message with the log probabilities of its text parts left out (shown as `[]`)."""
    if item.get("type") != "message" or not any(
        part.get("logprobs") for part in item.get("content") or []
    ):
        return item
    content = [
        {**part, "logprobs": []} if part.get("logprobs") else part for part in item["content"]
    ]
    return {**item, "content": content}


class Conversations:
    def __init__(self, runtime: Runtime, files: FileReader) -> None:
        self.store = ConversationStore(runtime.pool)
        self.responses = runtime.store  # finds the items an `item_reference` names
        self.keys = runtime.sealing_keys
        self.files = files

    # --- the conversation ------------------------------------------------------------

    async def create(self, owner: str, body: Any) -> ConversationObject:
        request = _parse(CreateConversationRequest, body)
        check_metadata(request.metadata)
        items = await self._accepted_items(owner, request.items or [])
        check_item_ids(items, set(), "items")
        created = await self.store.create(ids.new_id("conv"), owner, request.metadata or {}, items)
        return conversation_object(created)

    async def retrieve(self, owner: str, conversation_id: str) -> ConversationObject:
        return conversation_object(await self._get(owner, conversation_id))

    async def update(self, owner: str, conversation_id: str, body: Any) -> ConversationObject:
        request = _parse(UpdateConversationRequest, body)
        check_metadata(request.metadata)
        _check_id(conversation_id)
        updated = await self.store.update_metadata(conversation_id, owner, request.metadata or {})
        if updated is None:
            raise _not_found(conversation_id)
        return conversation_object(updated)

    async def delete(self, owner: str, conversation_id: str) -> JsonObject:
        """Delete the conversation and its list of items; the responses that ran on it stay
        (a response still running on it finishes, and appends nothing)."""
        _check_id(conversation_id)
        if not await self.store.delete(conversation_id, owner):
            raise _not_found(conversation_id)
        return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}

    # --- its items -------------------------------------------------------------------

    async def add_items(
        self, owner: str, conversation_id: str, body: Any, include: list[str]
    ) -> JsonObject:
        request = _parse(AddItemsRequest, body)
        if not request.items:
            raise invalid(
                "items",
                "Invalid 'items': empty array. Expected an array with minimum length 1, but "
                "got an empty array instead.",
                "empty_array",
            )
        await self._get(owner, conversation_id)
        items = await self._accepted_items(owner, request.items)
        async with self.store.transaction() as conn:
            conversation = await self._locked(conn, owner, conversation_id)
            await self._refuse_while_running(conn, conversation, "conversation_id")
            taken = await self.store.taken_item_ids(conn, conversation.id, [i["id"] for i in items])
            check_item_ids(items, taken, "items")
            added = await self.store.add_items(conn, conversation, items)
        view = await self._view(owner, include)
        return item_list([view(stored.item) for stored in added], has_more=False)

    async def list_items(
        self,
        owner: str,
        conversation_id: str,
        *,
        limit: int,
        order: str,
        after: str | None,
        include: list[str],
    ) -> JsonObject:
        """A page of the conversation's items; `after` is the id of the last item of the
        page before (the SDK's cursor)."""
        await self._get(owner, conversation_id)
        position = None
        if after is not None:
            cursor = None
            if ids.is_well_formed(after):  # no item has another form of id: not looked up
                cursor = await self.store.get_item(conversation_id, after)
            if cursor is None:
                shown = f" '{after}'" if ids.is_well_formed(after) else ""
                raise RequestError(
                    f"No item with id{shown} in conversation '{conversation_id}'.",
                    param="after",
                    code="invalid_value",
                )
            position = cursor.position
        page = await self.store.list_items(
            conversation_id, descending=order == "desc", after=position, limit=limit + 1
        )
        view = await self._view(owner, include)
        return item_list([view(stored.item) for stored in page[:limit]], has_more=len(page) > limit)

    async def retrieve_item(
        self, owner: str, conversation_id: str, item_id: str, include: list[str]
    ) -> Item:
        await self._get(owner, conversation_id)
        found = await self._item(conversation_id, item_id)
        view = await self._view(owner, include)
        return view(found.item)

    async def delete_item(
        self, owner: str, conversation_id: str, item_id: str
    ) -> ConversationObject:
        """Remove the item from the conversation; the conversation, as OpenAI answers."""
        _check_id(conversation_id)
        async with self.store.transaction() as conn:
            conversation = await self._locked(conn, owner, conversation_id)
            await self._refuse_while_running(conn, conversation, "conversation_id")
            if not ids.is_well_formed(item_id) or not await self.store.delete_item(
                conn, conversation_id, item_id
            ):
                raise _item_not_found(item_id)
        return conversation_object(conversation)

    # --- responses on a conversation -------------------------------------------------

    async def join(self, new: NewResponse, conn: AsyncConnection) -> NewResponse:
        """The new response's row, placed on the conversation it names, in the transaction
        that inserts it: after the items there now, which are its context. A 404 when the
        conversation is not the owner's, a 409 while another response runs on it, a 400 for
        input that repeats an item id the conversation holds."""
        if new.conversation_id is None:
            return new
        conversation = await self.store.locked(conn, new.conversation_id, new.owner)
        if conversation is None:
            raise _not_found(new.conversation_id, param="conversation")
        await self._refuse_while_running(conn, conversation, "conversation")
        items: list[Item] = new.request.get("input") or []
        taken = await self.store.taken_item_ids(conn, conversation.id, [i["id"] for i in items])
        check_item_ids(items, taken, "input")
        return dataclasses.replace(new, conversation_position=conversation.next_position)

    # --- helpers ---------------------------------------------------------------------

    async def _get(self, owner: str, conversation_id: str) -> StoredConversation:
        _check_id(conversation_id)
        found = await self.store.get(conversation_id, owner)
        if found is None:
            raise _not_found(conversation_id)
        return found

    async def _locked(
        self, conn: AsyncConnection, owner: str, conversation_id: str
    ) -> StoredConversation:
        found = await self.store.locked(conn, conversation_id, owner)
        if found is None:  # deleted since it was read
            raise _not_found(conversation_id)
        return found

    async def _item(self, conversation_id: str, item_id: str) -> StoredItem:
        found = None
        if ids.is_well_formed(item_id):
            found = await self.store.get_item(conversation_id, item_id)
        if found is None:
            raise _item_not_found(item_id)
        return found

    async def _refuse_while_running(
        self, conn: AsyncConnection, conversation: StoredConversation, param: str
    ) -> None:
        running = await self.store.running_response(conn, conversation.id)
        if running is not None:
            response_id, status = running
            raise ConversationLocked(
                "Another process is currently operating on this conversation: response "
                f"'{response_id}' is {status} on it. Retry once it has ended.",
                param=param,
            )

    async def _accepted_items(self, owner: str, raw: list[JsonObject]) -> list[Item]:
        """Items sent to be added, checked and normalised as a create's `input` is, their
        references resolved and their sealed reasoning opened; at most 20 at a time."""
        if len(raw) > MAX_ITEMS_PER_REQUEST:
            raise invalid(
                "items",
                f"Invalid 'items': array too long. Expected an array with maximum length "
                f"{MAX_ITEMS_PER_REQUEST}, but got an array with length {len(raw)} instead.",
                "array_above_max_length",
            )
        items = normalise_input(raw, param="items")
        return await resolve_input(
            items, owner, self.responses, self.keys, self.files, param="items"
        )

    async def _view(self, owner: str, include: list[str]) -> ItemView:
        """How items are shown for a request's `include`: sealed reasoning when asked for,
        and the log probabilities of output text only when asked for."""
        sealed = await self.keys.view_for({"include": include}, owner)
        if LOGPROBS in include:
            return sealed
        return lambda item: _without_logprobs(sealed(item))


def _check_id(conversation_id: str) -> None:
    if not ids.is_well_formed(conversation_id):
        # Not one Ferry could have made: it names nothing, is not looked up nor echoed back.
        raise NotFound("No conversation has that id.", param="conversation_id")


def _not_found(conversation_id: str, *, param: str = "conversation_id") -> NotFound:
    return NotFound(f"Conversation with id '{conversation_id}' not found.", param=param)


def _item_not_found(item_id: str) -> NotFound:
    shown = f" '{item_id}'" if ids.is_well_formed(item_id) else ""
    return NotFound(f"Item with id{shown} not found.", param="item_id")
