"""What the loop accumulates across the steps of one response, and how a run ends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.engine.assembly import assemble_output


@dataclass
class RunState:
    step_results: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    usage_missing: bool = False
    next_ordinal: int = 0
    tool_calls_run: int = 0

    @property
    def output(self) -> list[dict[str, Any]]:
        return assemble_output(self.step_results)

    def claim_ordinals(self, count: int) -> list[int]:
        """Step numbers for `count` new steps, in order."""
        first = self.next_ordinal
        self.next_ordinal += count
        return list(range(first, first + count))


@dataclass(frozen=True)
class Ending:
    status: str
    error: dict[str, Any] | None = None
    incomplete_details: dict[str, Any] | None = None
