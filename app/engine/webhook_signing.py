"""Signing secrets and signatures, per Standard Webhooks (what the SDK's `unwrap` checks).

A secret is `whsec_` followed by the base64 of 32 random bytes; the key is those bytes. A
delivery carries three headers: `webhook-id` (the delivery's id, the same on every attempt),
`webhook-timestamp` (seconds, the time of this attempt, which receivers hold to a few
minutes) and `webhook-signature`: `v1,` and the base64 HMAC-SHA256, under the key, of
`{webhook-id}.{webhook-timestamp}.{body}`. Several signatures are separated by spaces; a
receiver accepts any that matches (so the previous secret of a rotation can sign too).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
_SECRET_BYTES = 32


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode("ascii")


def secret_hint(secret: str) -> str:
    """What an endpoint shows of its secret once it is set: enough to tell two apart."""
    return f"{SECRET_PREFIX}…{secret[-4:]}"


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """One signature, `v1,<base64>`."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(
    signing_secrets: list[str], webhook_id: str, timestamp: int, body: bytes
) -> str:
    """The `webhook-signature` header: one signature for each secret that signs."""
    return " ".join(sign(secret, webhook_id, timestamp, body) for secret in signing_secrets)


def delivery_headers(
    signing_secrets: list[str], webhook_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(signing_secrets, webhook_id, timestamp, body),
    }
