"""The /v1/webhook_endpoints endpoints (and /v1/webhook_event_types), as the SDK's
`client.webhooks` calls them."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.engine.webhook_endpoints import EVENT_TYPES, WebhookEndpoints
from app.http.auth import authenticate
from app.http.body import read_json
from app.http.query import query_int


def _endpoints(request: Request) -> WebhookEndpoints:
    endpoints: WebhookEndpoints = request.app.state.webhook_endpoints
    return endpoints


async def _owner(request: Request) -> str:
    return (await authenticate(request)).owner


async def _body(request: Request) -> Any:
    """The JSON body; none at all counts as `{}` (every parameter of update and
    rotate_secret is optional, and a client may send nothing)."""
    headers = request.headers
    if headers.get("content-length", "0") == "0" and "transfer-encoding" not in headers:
        return {}
    return await read_json(request, request.app.state.settings.max_body_bytes)


def _endpoint_id(request: Request) -> str:
    return str(request.path_params["webhook_endpoint_id"])


async def create_endpoint(request: Request) -> Response:
    owner = await _owner(request)
    body = await read_json(request, request.app.state.settings.max_body_bytes)
    return JSONResponse(await _endpoints(request).create(owner, body))


async def list_endpoints(request: Request) -> Response:
    owner = await _owner(request)
    page = await _endpoints(request).list_page(
        owner,
        limit=query_int(request, "limit", default=20, low=1, high=100),
        after=request.query_params.get("after"),
    )
    return JSONResponse(page)


async def retrieve_endpoint(request: Request) -> Response:
    owner = await _owner(request)
    return JSONResponse(await _endpoints(request).retrieve(owner, _endpoint_id(request)))


async def update_endpoint(request: Request) -> Response:
    owner = await _owner(request)
    body = await _body(request)
    return JSONResponse(await _endpoints(request).update(owner, _endpoint_id(request), body))


async def delete_endpoint(request: Request) -> Response:
    owner = await _owner(request)
    return JSONResponse(await _endpoints(request).delete(owner, _endpoint_id(request)))


async def rotate_secret(request: Request) -> Response:
    owner = await _owner(request)
    body = await _body(request)
    rotated = await _endpoints(request).rotate_secret(owner, _endpoint_id(request), body)
    return JSONResponse(rotated)


async def test_endpoint(request: Request) -> Response:
    owner = await _owner(request)
    body = await _body(request)
    return JSONResponse(await _endpoints(request).test(owner, _endpoint_id(request), body))


async def list_event_types(request: Request) -> Response:
    await _owner(request)
    return JSONResponse({"object": "list", "data": list(EVENT_TYPES)})


_ONE = "/v1/webhook_endpoints/{webhook_endpoint_id}"

webhook_routes = [
    Route("/v1/webhook_endpoints", create_endpoint, methods=["POST"]),
    Route("/v1/webhook_endpoints", list_endpoints, methods=["GET"]),
    Route(_ONE, retrieve_endpoint, methods=["GET"]),
    Route(_ONE, update_endpoint, methods=["POST"]),
    Route(_ONE, delete_endpoint, methods=["DELETE"]),
    Route(f"{_ONE}/rotate_secret", rotate_secret, methods=["POST"]),
    Route(f"{_ONE}/test", test_endpoint, methods=["POST"]),
    Route("/v1/webhook_event_types", list_event_types, methods=["GET"]),
]
