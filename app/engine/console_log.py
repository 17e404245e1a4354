"""A response's logged events as the console's live tail shows them: one line each, small.

A logged event can carry a whole Response object (`response.created`, the terminal event);
the page needs only what tells the events apart, so each is cut down to its sequence
number, type, item and a short text: the delta of a delta event, what an item is, the
status a response event reports, an error's message.
"""

from __future__ import annotations

from typing import Any

from app.shapes import Event

# Longest text a line carries; a delta is never cut (the page joins a run of them).
LONGEST_TEXT = 500


def event_line(event: Event) -> dict[str, Any]:
    line: dict[str, Any] = {
        "seq": event.get("sequence_number"),
        "type": event.get("type"),
        "item_id": event.get("item_id") or (event.get("item") or {}).get("id"),
        "text": _text(event),
    }
    return line


def _text(event: Event) -> str:
    kind = str(event.get("type", ""))
    if kind.endswith(".delta") and isinstance(event.get("delta"), str):
        return str(event["delta"])
    if isinstance(event.get("response"), dict):
        response = event["response"]
        error = response.get("error") or {}
        said = f"status {response.get('status')}"
        return _cut(f"{said}: {error.get('message')}" if error.get("message") else said)
    if isinstance(event.get("item"), dict):
        item = event["item"]
        parts = [str(item.get("type")), str(item.get("name") or ""), str(item.get("status") or "")]
        return _cut(" ".join(part for part in parts if part))
    if kind == "error":
        nested = event.get("error")
        fault: dict[str, Any] = nested if isinstance(nested, dict) else event
        return _cut(f"{fault.get('code')}: {fault.get('message')}")
    if isinstance(event.get("text"), str):
        return _cut(event["text"])
    if isinstance(event.get("arguments"), str):
        return _cut(event["arguments"])
    return ""


def _cut(text: str) -> str:
    return text if len(text) <= LONGEST_TEXT else text[: LONGEST_TEXT - 1] + "…"
