"""What the HTTP front end asks about webhook endpoints: create, show, list, change, delete,
rotate the secret, send a test event. Every endpoint belongs to the owner of the API key
that made it; another key's endpoint is not found.

The shapes are the SDK's: `WebhookEndpoint`, `WebhookEndpointWithSecret` (the secret is
shown when it is made: on create and on rotation), `DeletedWebhookEndpoint`,
`WebhookEndpointTestResult`.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from app import ids
from app.engine.errors import NotFound, RequestError
from app.engine.webhook_sender import WebhookSender
from app.engine.webhook_signing import new_secret, secret_hint
from app.engine.webhook_urls import UrlRefused
from app.shapes import JsonObject
from app.statuses import ResponseStatus
from app.store.webhooks import StoredEndpoint, WebhookStore, event_payload

log = logging.getLogger(__name__)

#: The events Ferry sends: the ends of responses, named as OpenAI's webhook events are.
EVENT_TYPES: tuple[str, ...] = tuple(
    status.terminal_event_type
    for status in (
        ResponseStatus.COMPLETED,
        ResponseStatus.FAILED,
        ResponseStatus.CANCELLED,
        ResponseStatus.INCOMPLETE,
    )
)
#: OpenAI's bounds on an endpoint's name.
MAX_NAME_CHARS = 256
#: How long `keep_old_secret_active_for_24_hours` keeps the old secret signing.
KEEP_OLD_SECRET_S = 24 * 3600.0


def endpoint_object(endpoint: StoredEndpoint, *, with_secret: bool = False) -> JsonObject:
    shown: JsonObject = {
        "id": endpoint.id,
        "object": "webhook_endpoint",
        "created_at": int(endpoint.created_at.timestamp()),
        "updated_at": int(endpoint.updated_at.timestamp()),
        "name": endpoint.name,
        "url": endpoint.url,
        "event_types": endpoint.event_types,
        "signing_secret_hint": secret_hint(endpoint.signing_secret),
    }
    if with_secret:
        shown["signing_secret"] = endpoint.signing_secret
    return shown


# --- parameters ----------------------------------------------------------------------


def _object_body(body: Any, known: tuple[str, ...]) -> JsonObject:
    if not isinstance(body, dict):
        raise RequestError("The request body must be a JSON object.", code="invalid_json")
    for key in body:
        if key not in known:
            raise RequestError(f"Unknown parameter: '{key}'.", param=key, code="unknown_parameter")
    # A parameter sent as null counts as not sent, as on create.
    return {key: value for key, value in body.items() if value is not None}


def _missing(param: str) -> RequestError:
    return RequestError(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def _name(value: Any) -> str:
    if not isinstance(value, str):
        raise RequestError(
            "Invalid type for 'name': expected a string.", param="name", code="invalid_type"
        )
    if not 1 <= len(value) <= MAX_NAME_CHARS:
        raise RequestError(
            f"Invalid value for 'name': expected 1 to {MAX_NAME_CHARS} characters, "
            f"got {len(value)}.",
            param="name",
            code="invalid_value",
        )
    return value


def _event_type(value: Any, param: str) -> str:
    if value not in EVENT_TYPES:
        allowed = ", ".join(f"'{t}'" for t in EVENT_TYPES)
        shown = f"'{value}'" if isinstance(value, str) else "a non-string value"
        raise RequestError(
            f"Invalid value for '{param}': {shown}. Ferry sends these event types: {allowed}.",
            param=param,
            code="invalid_value",
        )
    return str(value)


def _event_types(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise RequestError(
            "Invalid type for 'event_types': expected an array of event types.",
            param="event_types",
            code="invalid_type",
        )
    if not value:
        raise RequestError(
            "Invalid value for 'event_types': subscribe to at least one event type.",
            param="event_types",
            code="invalid_value",
        )
    chosen = [_event_type(item, f"event_types[{i}]") for i, item in enumerate(value)]
    return list(dict.fromkeys(chosen))  # each once, in the order given


def _url(value: Any) -> str:
    if not isinstance(value, str):
        raise RequestError(
            "Invalid type for 'url': expected a string.", param="url", code="invalid_type"
        )
    return value


class WebhookEndpoints:
    def __init__(self, store: WebhookStore, sender: WebhookSender) -> None:
        self.store = store
        self.sender = sender

    async def _allowed_url(self, url: str) -> str:
        """The URL, if Ferry may send to it (WEBHOOK_ALLOWED_URLS, and no private address
        unless allowed): checked with its host looked up, as a delivery checks it."""
        try:
            async with asyncio.timeout(self.sender.timeout_s):  # a lookup that hangs
                await self.sender.policy.target(url)
        except UrlRefused as exc:
            raise RequestError(str(exc), param="url", code="invalid_url") from None
        except TimeoutError:
            message = f"The host of '{url}' could not be resolved in time."
            raise RequestError(message, param="url", code="invalid_url") from None
        return url

    async def create(self, owner: str, body: Any) -> JsonObject:
        params = _object_body(body, ("name", "url", "event_types"))
        for required in ("name", "url", "event_types"):
            if required not in params:
                raise _missing(required)
        name = _name(params["name"])
        event_types = _event_types(params["event_types"])
        url = await self._allowed_url(_url(params["url"]))
        endpoint = await self.store.insert_endpoint(
            owner, name=name, url=url, event_types=event_types, signing_secret=new_secret()
        )
        log.info("webhook endpoint created", extra={"webhook_endpoint_id": endpoint.id})
        return endpoint_object(endpoint, with_secret=True)

    async def get(self, owner: str, endpoint_id: str) -> StoredEndpoint:
        endpoint = None
        if ids.is_well_formed(endpoint_id):  # else it names nothing, and is not looked up
            endpoint = await self.store.get_endpoint(owner, endpoint_id)
        if endpoint is None:
            raise _not_found(endpoint_id)
        return endpoint

    async def retrieve(self, owner: str, endpoint_id: str) -> JsonObject:
        return endpoint_object(await self.get(owner, endpoint_id))

    async def list_page(self, owner: str, *, limit: int, after: str | None) -> JsonObject:
        """A page of the owner's endpoints, newest first."""
        if after is not None:
            try:
                await self.get(owner, after)
            except NotFound:
                raise RequestError(
                    f"No webhook endpoint with id '{after}' to list after.",
                    param="after",
                    code="invalid_value",
                ) from None
        found = await self.store.list_endpoints(owner, limit=limit + 1, after=after)
        page = [endpoint_object(endpoint) for endpoint in found[:limit]]
        return {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(found) > limit,
        }

    async def update(self, owner: str, endpoint_id: str, body: Any) -> JsonObject:
        params = _object_body(body, ("name", "url", "event_types"))
        await self.get(owner, endpoint_id)  # a 404 before any check of what it would become
        name = _name(params["name"]) if "name" in params else None
        event_types = _event_types(params["event_types"]) if "event_types" in params else None
        url = await self._allowed_url(_url(params["url"])) if "url" in params else None
        updated = await self.store.update_endpoint(
            owner, endpoint_id, name=name, url=url, event_types=event_types
        )
        if updated is None:  # deleted meanwhile
            raise _not_found(endpoint_id)
        return endpoint_object(updated)

    async def delete(self, owner: str, endpoint_id: str) -> JsonObject:
        await self.get(owner, endpoint_id)
        if not await self.store.delete_endpoint(owner, endpoint_id):
            raise _not_found(endpoint_id)
        log.info("webhook endpoint deleted", extra={"webhook_endpoint_id": endpoint_id})
        return {"id": endpoint_id, "object": "webhook_endpoint.deleted", "deleted": True}

    async def rotate_secret(self, owner: str, endpoint_id: str, body: Any) -> JsonObject:
        params = _object_body(body, ("keep_old_secret_active_for_24_hours",))
        keep_old = params.get("keep_old_secret_active_for_24_hours", False)
        if not isinstance(keep_old, bool):
            raise RequestError(
                "Invalid type for 'keep_old_secret_active_for_24_hours': expected a boolean.",
                param="keep_old_secret_active_for_24_hours",
                code="invalid_type",
            )
        await self.get(owner, endpoint_id)
        rotated = await self.store.rotate_secret(
            owner, endpoint_id, new_secret(), keep_old_s=KEEP_OLD_SECRET_S if keep_old else None
        )
        if rotated is None:
            raise _not_found(endpoint_id)
        log.info("webhook secret rotated", extra={"webhook_endpoint_id": endpoint_id})
        return endpoint_object(rotated, with_secret=True)

    async def test(self, owner: str, endpoint_id: str, body: Any) -> JsonObject:
        """Send a sample event of the type asked, once, now, and say what the endpoint
        answered. Its `data.id` names a response that does not exist. It is recorded as a
        delivery like any other, and not tried again."""
        params = _object_body(body, ("event_type",))
        if "event_type" not in params:
            raise _missing("event_type")
        event_type = _event_type(params["event_type"], "event_type")
        endpoint = await self.get(owner, endpoint_id)
        event_id = ids.new_id("evt")
        payload = event_payload(event_id, event_type, datetime.now(UTC), {"id": ids.response_id()})
        delivery_id = await self.store.insert_test_delivery(
            endpoint.id, event_id, event_type, payload
        )
        due = await self.store.delivery_to_send(delivery_id)
        if due is None:  # the endpoint was deleted meanwhile
            raise _not_found(endpoint_id)
        outcome = await self.sender.send(due.url, due.id, due.payload, due.signing_secrets)
        async with self.store.transaction() as conn:
            await self.store.record_attempt(delivery_id, outcome, conn)
            if not outcome.delivered:
                await self.store.give_up(delivery_id, conn)
        if outcome.status_code is None:
            raise RequestError(
                f"The test event could not be delivered to {endpoint.url}: {outcome.error}.",
                param=None,
                code="webhook_delivery_failed",
            )
        return {
            "object": "webhook_endpoint.test",
            "webhook_endpoint_id": endpoint.id,
            "event_type": event_type,
            "status_code": outcome.status_code,
            "success": True,
        }


def _not_found(endpoint_id: str) -> NotFound:
    if not ids.is_well_formed(endpoint_id):  # not echoed back: it may be anything
        return NotFound("No webhook endpoint has that id.", param="webhook_endpoint_id")
    return NotFound(
        f"No webhook endpoint found with id '{endpoint_id}'.", param="webhook_endpoint_id"
    )
