"""Reasoning items for the tests: as a client sends them, and as a reasoning model's turn
leaves them in a response's stored output; and what the upstream was sent."""

from __future__ import annotations

import secrets
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from tests.fakes.upstream.spy import requests_mentioning

Json = dict[str, Any]


def marker(what: str) -> str:
    """A text only this test sends, to find its requests in the upstream's spy."""
    return f"{what}-{secrets.token_hex(4)}"


def sent_upstream(upstream_url: str, mark: str) -> list[Json]:
    """The messages of the last completion request that carried `mark`."""
    found = requests_mentioning(upstream_url, mark)
    assert found, f"no upstream request carried {mark}"
    messages: list[Json] = found[-1]["body"]["messages"]
    return messages


def reasoning(text: str, item_id: str | None = None) -> Json:
    """A finished reasoning item holding `text`, in the shape Ferry outputs one."""
    return {
        "type": "reasoning",
        "id": item_id or f"rs_{secrets.token_hex(8)}",
        "summary": [{"type": "summary_text", "text": f"summary of {text}"}],
        "content": [{"type": "reasoning_text", "text": text}],
        "status": "completed",
    }


def assistant(text: str) -> Json:
    return {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def add_reasoning_to_output(db: psycopg.Connection[Any], response_id: str, text: str) -> Json:
    """Put a reasoning item first in a finished response's stored output, as a turn of a
    reasoning model leaves it there; the item."""
    item = reasoning(text)
    db.execute(
        "UPDATE responses SET output = jsonb_insert(output, '{0}', %s) WHERE id = %s",
        (Jsonb(item), response_id),
    )
    return item
