"""Delivering a webhook: the body of a `ferry:deliver_webhook` job, one attempt each.

An attempt that the receiver acknowledges (2xx) ends the delivery. Any other outcome is
recorded and the next attempt deferred in the same transaction, after an exponential
backoff (WEBHOOK_BACKOFF_BASE_S, doubling, at most WEBHOOK_BACKOFF_MAX_S, jittered), until
WEBHOOK_RETRY_WINDOW_S after the event; then the delivery is given up (`failed`). Every
attempt carries the same `webhook-id`, so a receiver can tell a retry from a new event.

At least once: a worker that dies between the receiver's 2xx and recording it leaves the
job stalled; it is retried (`WorkerSide.recover`) and the event is sent again, with the
same `webhook-id`.
"""

from __future__ import annotations

import logging
import random

from app.config import Settings
from app.engine.webhook_sender import WebhookSender
from app.store.queue import JobQueue
from app.store.webhooks import WebhookStore

log = logging.getLogger(__name__)


def backoff_s(failed_attempts: int, base_s: float, max_s: float) -> float:
    """The wait before the next attempt after `failed_attempts` failures: `base_s` doubled
    for each failure after the first, capped at `max_s`, then between half and all of it
    (receivers that failed together are not all tried again at the same instant)."""
    ceiling = min(max_s, base_s * 2.0 ** min(failed_attempts - 1, 32))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class WebhookDeliverer:
    def __init__(
        self, store: WebhookStore, jobs: JobQueue, sender: WebhookSender, settings: Settings
    ) -> None:
        self.store = store
        self.jobs = jobs
        self.sender = sender
        self.settings = settings

    async def deliver(self, delivery_id: str) -> None:
        """Make one attempt at a pending delivery, and record how it went."""
        due = await self.store.delivery_to_send(delivery_id)
        if due is None:
            log.info("nothing to deliver", extra={"delivery_id": delivery_id})
            return
        outcome = await self.sender.send(due.url, due.id, due.payload, due.signing_secrets)
        extra = {
            "delivery_id": due.id,
            "event_type": due.event_type,
            "status_code": outcome.status_code,
            "latency_ms": round(outcome.latency_ms, 1),
        }
        async with self.store.transaction() as conn:
            number = await self.store.record_attempt(due.id, outcome, conn)
            if number is None:  # the endpoint was deleted meanwhile
                return
            if outcome.delivered:
                log.info("webhook delivered", extra={**extra, "attempt": number})
                return
            wait_s = backoff_s(
                number, self.settings.webhook_backoff_base_s, self.settings.webhook_backoff_max_s
            )
            age_after_wait_s = due.age_s + outcome.latency_ms / 1000 + wait_s
            if age_after_wait_s > self.settings.webhook_retry_window_s:
                await self.store.give_up(due.id, conn)
                log.warning(
                    "webhook given up",
                    extra={**extra, "attempt": number, "error": outcome.error},
                )
                return
            await self.jobs.defer_delivery(due.id, conn, delay_s=wait_s)
        log.info(
            "webhook attempt failed; trying again",
            extra={**extra, "attempt": number, "error": outcome.error, "retry_in_s": wait_s},
        )
