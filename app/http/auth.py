"""Bearer API keys: who is calling, as the owner digest their responses are filed under."""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import Request

from app.http.errors import Unauthorized


def owner_of(api_key: str | None) -> str:
    """Who owns a response: a digest of the API key, so keys never reach the database."""
    if not api_key:
        return ""
    return hashlib.sha256(api_key.encode()).hexdigest()[:32]


def authenticate(request: Request, api_keys: frozenset[str]) -> str:
    """The owner digest for the request's key; '' when the API runs open."""
    if not api_keys:
        return ""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise Unauthorized(
            "You didn't provide an API key. Provide it in the Authorization header "
            "(Authorization: Bearer YOUR_KEY).",
            code="missing_api_key",
        )
    # Compare against every key in constant time, so timing does not tell which prefix matched.
    if not any(hmac.compare_digest(key.encode(), k.encode()) for k in api_keys):
        raise Unauthorized("Incorrect API key provided.", code="invalid_api_key")
    return owner_of(key)
