"""What the loop accumulates across the steps of one response, and how a run ends.

The state is rebuilt from the persisted steps when a run resumes after a crash: finished
steps count as done, so completed model turns and tool calls are never repeated.

The output of a response is assembled here from the results of its steps; GET, stream
replay, cancel and the loop itself all use the one function, so every view of a response
shows the same items in the same order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from app.engine.approvals import awaits_approval
from app.engine.chat.usage import add_usage
from app.engine.events import Emitter
from app.engine.items import is_call
from app.shapes import ErrorInfo, IncompleteDetails, Item, StepResult, UpstreamRefusal, Usage
from app.statuses import ResponseStatus, StepKind, StepStatus
from app.store.rows import StepOutcome, StoredResponse, StoredStep

#: The error code of a step whose process stopped mid-way; the step is redone.
ABANDONED_CODE = "abandoned"
ABANDONED: ErrorInfo = {
    "code": ABANDONED_CODE,
    "message": "the process running this step stopped",
}


def abandoned(result: StepResult | None = None, usage: Usage | None = None) -> StepOutcome:
    """How a step cut off mid-way ends: `cancelled`, and recognisably abandoned."""
    return StepOutcome(StepStatus.CANCELLED, result or {"items": []}, usage=usage, error=ABANDONED)


def is_abandoned(step: StoredStep) -> bool:
    """Recognised by the error's code, so rewording the message never breaks a resume."""
    return isinstance(step.error, dict) and step.error.get("code") == ABANDONED_CODE


def assemble_output(step_results: Iterable[StepResult | None]) -> list[Item]:
    """The output the step results hold, in order.

    An item a later step finishes (an `mcp_call` opened by a model turn, completed by its
    tool step) replaces the earlier copy in place, keeping the position it was announced at.
    """
    output: list[Item] = []
    position: dict[str, int] = {}
    for result in step_results:
        if result is None:  # a step still running, with nothing finished yet
            continue
        for item in result.get("items") or []:
            at = position.get(item.get("id", ""))
            if at is None:
                position[item.get("id", "")] = len(output)
                output.append(item)
            else:
                output[at] = item
    return output


def settled(output: list[Item]) -> list[Item]:
    """The output of a response that has ended: an item still `in_progress` (cut off by a
    timeout, a cancel or a failure) can never finish now, so it reads `incomplete`."""
    return [
        {**item, "status": "incomplete"} if item.get("status") == "in_progress" else item
        for item in output
    ]


def output_of_steps(steps: list[StoredStep]) -> list[Item]:
    """The output the persisted steps hold, without the work of steps since abandoned."""
    return assemble_output(step.result for step in steps if not is_abandoned(step))


@dataclass(frozen=True)
class Ending:
    status: ResponseStatus
    error: ErrorInfo | None = None
    incomplete_details: IncompleteDetails | None = None
    upstream_refusal: UpstreamRefusal | None = None  # see `app.engine.refusals`

    @classmethod
    def failed(cls, code: str, message: str) -> Ending:
        return cls(ResponseStatus.FAILED, error={"code": code, "message": message})

    @classmethod
    def incomplete(cls, reason: str | None) -> Ending:
        return cls(ResponseStatus.INCOMPLETE, incomplete_details={"reason": reason})


@dataclass(frozen=True)
class FinishedTurn:
    """What a finished model turn decided, enough to carry on after it."""

    outcome: StepStatus  # completed | incomplete | failed
    calls: list[Item]
    error: ErrorInfo | None = None
    incomplete_reason: str | None = None
    upstream_refusal: UpstreamRefusal | None = None  # the response's first turn, refused
    # It asked for approval of some calls: once its other calls are answered, the response
    # ends, and the client's answers continue it.
    awaits_approval: bool = False

    def ending(self) -> Ending | None:
        """How the response ends after this turn, or None when its tool calls come next."""
        if self.outcome == StepStatus.FAILED:
            return Ending(
                ResponseStatus.FAILED, error=self.error, upstream_refusal=self.upstream_refusal
            )
        if self.outcome == StepStatus.INCOMPLETE:
            return Ending.incomplete(self.incomplete_reason)
        if not self.calls:
            return Ending(ResponseStatus.COMPLETED)
        return None


@dataclass
class Run:
    """One run of the loop over one response: its row, where its events go, what it did."""

    response: StoredResponse
    emitter: Emitter
    state: RunState


@dataclass
class RunState:
    step_results: list[StepResult] = field(default_factory=list)
    usage: Usage | None = None
    usage_missing: bool = False
    next_ordinal: int = 0
    tool_calls_run: int = 0
    model_turns: int = 0
    last_turn: FinishedTurn | None = None
    answered: set[str] = field(default_factory=set)  # call keys with a finished tool step
    skipped: set[str] = field(default_factory=set)  # call keys closed without running
    interrupted: set[str] = field(default_factory=set)  # call keys cut off mid-call
    mcp_listed: dict[str, Item] = field(default_factory=dict)  # server label -> its list item

    @property
    def output(self) -> list[Item]:
        return assemble_output(self.step_results)

    def claim_ordinals(self, count: int) -> list[int]:
        """Step numbers for `count` new steps, in order."""
        first = self.next_ordinal
        self.next_ordinal += count
        return list(range(first, first + count))

    def record_turn(self, turn: FinishedTurn, usage: Usage | None, missing: bool) -> None:
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
            running = step.status == StepStatus.IN_PROGRESS
            if running:
                cut.append(step)
            elif not is_abandoned(step):
                state._restore(step)
            else:
                # Work redone since, but the tokens it used were spent all the same.
                state.usage = add_usage(state.usage, step.usage)
            # A call cut off (now, or in an earlier attempt) may have had its effect.
            if running or is_abandoned(step):
                request = step.request or {}
                call_id = request.get("call_id")
                if step.kind == StepKind.TOOL_CALL and call_id and "skipped" not in request:
                    state.interrupted.add(call_id)
        return state, cut

    def _restore(self, step: StoredStep) -> None:
        result: StepResult = step.result or {"items": []}
        request = step.request or {}
        self.step_results.append(result)
        if step.kind == StepKind.MODEL_CALL:
            turn = FinishedTurn(
                outcome=StepStatus(step.status),
                calls=[item for item in result.get("items") or [] if is_call(item)],
                error=step.error,
                incomplete_reason=result.get("incomplete_reason"),
                awaits_approval=awaits_approval(result.get("items") or []),
            )
            self.record_turn(turn, step.usage, bool(result.get("usage_missing")))
        elif "mcp_list_tools" in request:
            # A listing step holds its one `mcp_list_tools` item; none if it never finished.
            items: list[Item | None] = list(result.get("items") or [])
            [item] = items or [None]
            if item is not None and step.status == StepStatus.COMPLETED:
                self.mcp_listed[request["mcp_list_tools"]] = item
        elif "skipped" in request:
            self.skipped.add(request["call_id"])
            self.answered.add(request["call_id"])
        elif "call_id" in request:
            self.tool_calls_run += 1
            self.answered.add(request["call_id"])
