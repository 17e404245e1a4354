"""What the loop accumulates across the steps of one response, and how a run ends.

The state is rebuilt from the persisted steps when a run resumes after a crash: finished
steps count as done, so completed model turns and tool calls are never repeated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.engine.assembly import assemble_output
from app.engine.usage import add_usage
from app.store.responses import StoredStep

ABANDONED = {"code": "abandoned", "message": "the process running this step stopped"}


def output_of_steps(steps: list[StoredStep]) -> list[dict[str, Any]]:
    """The output the persisted steps hold, without the work of steps since abandoned."""
    return assemble_output(step.result for step in steps if step.error != ABANDONED)


def call_key(call: dict[str, Any]) -> str:
    """What identifies a tool call across retries: its call id (an mcp_call's item id)."""
    return str(call.get("call_id") or call["id"])


@dataclass(frozen=True)
class Ending:
    status: str
    error: dict[str, Any] | None = None
    incomplete_details: dict[str, Any] | None = None


@dataclass(frozen=True)
class TurnRecord:
    """What a finished model turn decided, enough to carry on after it."""

    outcome: str  # completed | incomplete | failed
    calls: list[dict[str, Any]]
    error: dict[str, Any] | None = None
    incomplete_reason: str | None = None

    def ending(self) -> Ending | None:
        """How the response ends after this turn, or None when its tool calls come next."""
        if self.outcome == "failed":
            return Ending("failed", error=self.error)
        if self.outcome == "incomplete":
            return Ending("incomplete", incomplete_details={"reason": self.incomplete_reason})
        if not self.calls:
            return Ending("completed")
        return None


@dataclass
class RunState:
    step_results: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    usage_missing: bool = False
    next_ordinal: int = 0
    tool_calls_run: int = 0
    model_turns: int = 0
    last_turn: TurnRecord | None = None
    answered: set[str] = field(default_factory=set)  # call keys with a finished tool step
    skipped: set[str] = field(default_factory=set)  # call keys closed without running
    interrupted: set[str] = field(default_factory=set)  # call keys cut off mid-call
    mcp_listed: dict[str, dict[str, Any]] = field(default_factory=dict)  # label -> item
    # In a worker, a model turn cut off mid-stream is redone (no client saw it live).
    redo_cut_turns: bool = False

    @property
    def output(self) -> list[dict[str, Any]]:
        return assemble_output(self.step_results)

    def claim_ordinals(self, count: int) -> list[int]:
        """Step numbers for `count` new steps, in order."""
        first = self.next_ordinal
        self.next_ordinal += count
        return list(range(first, first + count))

    def record_turn(self, turn: TurnRecord, usage: dict[str, Any] | None, missing: bool) -> None:
        self.model_turns += 1
        self.last_turn = turn
        self.usage = add_usage(self.usage, usage)
        self.usage_missing = self.usage_missing or missing

    @classmethod
    def from_steps(cls, steps: list[StoredStep]) -> tuple[RunState, list[StoredStep]]:
        """The state the finished steps leave, and the steps that were cut off mid-way."""
        state = cls(next_ordinal=max((s.ordinal for s in steps), default=-1) + 1)
        cut = []
        for step in steps:
            if step.status == "in_progress":
                cut.append(step)
            elif step.error != ABANDONED:
                state._restore(step)
            else:
                # Work redone since, but the tokens it used were spent all the same.
                state.usage = add_usage(state.usage, step.usage)
            # A call cut off (now, or in an earlier attempt) may have had its effect.
            if step.status == "in_progress" or step.error == ABANDONED:
                call_id = (step.request or {}).get("call_id")
                if step.kind == "tool_call" and call_id and "skipped" not in step.request:
                    state.interrupted.add(call_id)
        return state, cut

    def _restore(self, step: StoredStep) -> None:
        result = step.result or {}
        request = step.request or {}
        if step.kind == "model_call":
            items = result.get("items") or []
            self.step_results.append(result)
            calls = [i for i in items if i["type"] in ("function_call", "mcp_call")]
            turn = TurnRecord(
                outcome=step.status,
                calls=calls,
                error=step.error,
                incomplete_reason=result.get("incomplete_reason"),
            )
            self.record_turn(turn, step.usage, bool(result.get("usage_missing")))
            return
        self.step_results.append(result)
        if "mcp_list_tools" in request:
            [item] = result.get("items") or [None]
            if item is not None and step.status == "completed":
                self.mcp_listed[request["mcp_list_tools"]] = item
        elif "skipped" in request:
            self.skipped.add(request["call_id"])
            self.answered.add(request["call_id"])
        elif "call_id" in request:
            self.tool_calls_run += 1
            self.answered.add(request["call_id"])
