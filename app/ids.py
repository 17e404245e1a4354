"""Identifiers in OpenAI's style: a type prefix and random hex."""

from __future__ import annotations

import re
import secrets

_WELL_FORMED = re.compile(r"[A-Za-z0-9_-]{1,128}")


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def response_id() -> str:
    return new_id("resp")


def message_id() -> str:
    return new_id("msg")


def function_call_id() -> str:
    return new_id("fc")


def is_well_formed(value: str) -> bool:
    """Whether `value` could be an id of ours (or a client's item id): short, plain ASCII."""
    return _WELL_FORMED.fullmatch(value) is not None
