"""Structured logs: one JSON object a line, carrying the response id of the work at hand."""

from __future__ import annotations

import json
import logging

from app.logs import JsonFormatter, current_response_id


def record(msg: str, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("ferry.test", logging.INFO, __file__, 1, msg, (), None)
    rec.__dict__.update(extra)
    return rec


def test_json_line_carries_message_extras_and_response_id() -> None:
    token = current_response_id.set("resp_abc")
    try:
        line = JsonFormatter().format(record("response finished", status="completed"))
    finally:
        current_response_id.reset(token)
    entry = json.loads(line)
    assert entry["msg"] == "response finished"
    assert entry["level"] == "info"
    assert entry["status"] == "completed"
    assert entry["response_id"] == "resp_abc"
    assert "\n" not in line


def test_json_line_without_response_drops_terminal_colour_copy() -> None:
    entry = json.loads(JsonFormatter().format(record("started", color_message="\x1b[1mstarted")))
    assert "response_id" not in entry
    assert "color_message" not in entry
