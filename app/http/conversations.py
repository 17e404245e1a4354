"""The /v1/conversations endpoints: a conversation and its items, as the SDK's
`client.conversations` and `client.conversations.items` call them."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.engine.conversations import Conversations
from app.engine.include import check_include
from app.http.auth import authenticate
from app.http.body import read_json
from app.http.query import query_choice, query_int, query_list


def _conversations(request: Request) -> Conversations:
    conversations: Conversations = request.app.state.service.conversations
    return conversations


async def _owner(request: Request) -> str:
    return (await authenticate(request)).owner


async def _body(request: Request) -> object:
    return await read_json(request, request.app.state.settings.max_body_bytes)


def _include(request: Request) -> list[str]:
    """`include` from the query string, checked as on create."""
    include = query_list(request, "include")
    check_include(include)
    return include


async def create_conversation(request: Request) -> Response:
    owner = await _owner(request)
    created = await _conversations(request).create(owner, await _body(request))
    return JSONResponse(created)


async def retrieve_conversation(request: Request) -> Response:
    owner = await _owner(request)
    found = await _conversations(request).retrieve(owner, request.path_params["conversation_id"])
    return JSONResponse(found)


async def update_conversation(request: Request) -> Response:
    owner = await _owner(request)
    conversation_id = request.path_params["conversation_id"]
    updated = await _conversations(request).update(owner, conversation_id, await _body(request))
    return JSONResponse(updated)


async def delete_conversation(request: Request) -> Response:
    owner = await _owner(request)
    deleted = await _conversations(request).delete(owner, request.path_params["conversation_id"])
    return JSONResponse(deleted)


async def create_items(request: Request) -> Response:
    owner = await _owner(request)
    include = _include(request)
    added = await _conversations(request).add_items(
        owner, request.path_params["conversation_id"], await _body(request), include
    )
    return JSONResponse(added)


async def list_items(request: Request) -> Response:
    owner = await _owner(request)
    page = await _conversations(request).list_items(
        owner,
        request.path_params["conversation_id"],
        limit=query_int(request, "limit", default=20, low=1, high=100),
        order=query_choice(request, "order", ("asc", "desc"), default="desc"),
        after=request.query_params.get("after"),
        include=_include(request),
    )
    return JSONResponse(page)


async def retrieve_item(request: Request) -> Response:
    owner = await _owner(request)
    item = await _conversations(request).retrieve_item(
        owner,
        request.path_params["conversation_id"],
        request.path_params["item_id"],
        _include(request),
    )
    return JSONResponse(item)


async def delete_item(request: Request) -> Response:
    owner = await _owner(request)
    conversation = await _conversations(request).delete_item(
        owner, request.path_params["conversation_id"], request.path_params["item_id"]
    )
    return JSONResponse(conversation)


routes = [
    Route("/v1/conversations", create_conversation, methods=["POST"]),
    Route("/v1/conversations/{conversation_id}", retrieve_conversation, methods=["GET"]),
    Route("/v1/conversations/{conversation_id}", update_conversation, methods=["POST"]),
    Route("/v1/conversations/{conversation_id}", delete_conversation, methods=["DELETE"]),
    Route("/v1/conversations/{conversation_id}/items", create_items, methods=["POST"]),
    Route("/v1/conversations/{conversation_id}/items", list_items, methods=["GET"]),
    Route("/v1/conversations/{conversation_id}/items/{item_id}", retrieve_item, methods=["GET"]),
    Route("/v1/conversations/{conversation_id}/items/{item_id}", delete_item, methods=["DELETE"]),
]
