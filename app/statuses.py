"""The states of a response and of its steps, defined once for Python and SQL alike.

The SQL files name these sets by placeholder (`{{active}}`, `{{terminal}}`, ...), filled in
from here when the queries are loaded, so the two can never disagree.
"""

from __future__ import annotations

from enum import StrEnum


class ResponseStatus(StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    INCOMPLETE = "incomplete"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    @property
    def terminal_event_type(self) -> str:
        """The streaming event that ends a response in this state.

        `response.cancelled` is not among OpenAI's streaming events; Ferry ends a cancelled
        background stream with it (named like OpenAI's `response.cancelled` webhook event).
        """
        assert self.is_terminal, f"{self} is not a terminal status"
        return f"response.{self.value}"


TERMINAL_STATUSES = frozenset(
    {
        ResponseStatus.COMPLETED,
        ResponseStatus.FAILED,
        ResponseStatus.INCOMPLETE,
        ResponseStatus.CANCELLED,
    }
)
ACTIVE_STATUSES = frozenset(ResponseStatus) - TERMINAL_STATUSES
TERMINAL_EVENT_TYPES = frozenset(status.terminal_event_type for status in TERMINAL_STATUSES)


class StepStatus(StrEnum):
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    INCOMPLETE = "incomplete"
    CANCELLED = "cancelled"


class StepKind(StrEnum):
    MODEL_CALL = "model_call"
    TOOL_CALL = "tool_call"


def _sql_list(values: frozenset[str]) -> str:
    return "(" + ", ".join(f"'{value}'" for value in sorted(values)) + ")"


#: What the `{{name}}` placeholders in the SQL files stand for.
SQL_CONSTANTS = {
    "active": _sql_list(ACTIVE_STATUSES),
    "terminal": _sql_list(TERMINAL_STATUSES),
    "terminal_event_types": _sql_list(TERMINAL_EVENT_TYPES),
}
