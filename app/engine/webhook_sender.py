"""One attempt at a webhook delivery: checked, signed, sent, timed, and told how it went.

The attempt never raises for what the receiver or the network does: a refused URL, a
failed connection, a timeout and an error status are all outcomes to record.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from app.engine.webhook_signing import delivery_headers
from app.engine.webhook_urls import UrlPolicy, UrlRefused
from app.store.webhooks import AttemptOutcome

USER_AGENT = "Ferry/1.0 (webhooks)"


class WebhookSender:
    def __init__(
        self,
        policy: UrlPolicy,
        timeout_s: float,
        *,
        transport: httpx.AsyncBaseTransport | None = None,  # the network's, unless a test's
    ) -> None:
        self.policy = policy
        self.timeout_s = timeout_s
        self.client = httpx.AsyncClient(
            transport=transport,
            # No proxy from the environment: it would connect to the host, not to the
            # address that was checked. No redirects: a 3xx is a failed attempt, and
            # following it would go where no check was made.
            trust_env=False,
            follow_redirects=False,
            timeout=timeout_s,
            # A fresh connection each time: a pooled one, keyed by address, could carry the
            # request of another host name that resolves to the same address.
            limits=httpx.Limits(max_keepalive_connections=0),
            headers={"user-agent": USER_AGENT},
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def send(
        self, url: str, webhook_id: str, payload: str, signing_secrets: list[str]
    ) -> AttemptOutcome:
        """POST the payload to `url`, signed with each secret, within WEBHOOK_TIMEOUT_S
        (looking the host up included); the receiver's body is not read."""
        started = time.monotonic()
        status_code: int | None = None
        error: str | None = None
        try:
            async with asyncio.timeout(self.timeout_s):
                target = await self.policy.target(url)
                body = payload.encode()
                headers = delivery_headers(signing_secrets, webhook_id, int(time.time()), body)
                headers["host"] = target.host_header
                async with self.client.stream(
                    "POST",
                    target.url,
                    content=body,
                    headers=headers,
                    extensions={"sni_hostname": target.server_name},
                ) as response:
                    status_code = response.status_code
        except UrlRefused as exc:
            error = str(exc)
        except TimeoutError:
            error = f"no answer within {self.timeout_s:g}s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        latency_ms = (time.monotonic() - started) * 1000
        if status_code is not None and not 200 <= status_code < 300:
            error = f"the receiver answered {status_code}"
        return AttemptOutcome(status_code=status_code, latency_ms=latency_ms, error=error)
