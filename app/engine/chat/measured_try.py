"""One try of an upstream request, as the metrics see it: how long until its first chunk (or
its failure before one), whether it said how it finished, and how it ended."""

from __future__ import annotations

import time
from typing import Any

from app import metrics


class MeasuredTry:
    def __init__(self) -> None:
        self.sent = time.monotonic()
        self.first_chunk_s: float | None = None
        self.finished = False  # a chunk carried a finish reason

    @property
    def yielded(self) -> bool:
        return self.first_chunk_s is not None

    def saw(self, chunk: dict[str, Any]) -> None:
        if self.first_chunk_s is None:
            self.first_chunk_s = time.monotonic() - self.sent
        choices = chunk.get("choices")
        if isinstance(choices, list) and any(
            isinstance(choice, dict) and choice.get("finish_reason") for choice in choices
        ):
            self.finished = True

    def ended(self) -> None:
        """The body ended: `ok` if it said how it finished, else it was cut off."""
        self.record("ok" if self.finished else "cut")

    def failed(self, status_code: int | None) -> None:
        """It failed for good: cut off after its first chunk, or by its status before one."""
        self.record("cut" if self.yielded else metrics.upstream_status_outcome(status_code))

    def record(self, outcome: str) -> None:
        latency = self.first_chunk_s
        metrics.upstream_request(
            outcome, time.monotonic() - self.sent if latency is None else latency
        )
