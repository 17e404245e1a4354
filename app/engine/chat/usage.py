"""Normalise upstream token usage into the Responses API usage shape, and add usages up.

Upstreams report usage in different shapes and not always with clean values, and usage is
only bookkeeping: a malformed count must never fail a response, so every odd value counts
as 0 instead of raising.
"""

from __future__ import annotations

import math
from typing import Any

from app.shapes import JsonObject, Usage

_CHAT_KEYS = ("prompt_tokens", "completion_tokens")
_ANTHROPIC_CACHE_KEYS = ("cache_read_input_tokens", "cache_creation_input_tokens")
_RESPONSES_KEYS = ("input_tokens", "output_tokens")


def responses_usage(raw: JsonObject | None) -> Usage | None:
    """Responses-shaped usage for an upstream usage object; None when there is none."""
    if not isinstance(raw, dict) or not raw:
        return None
    if any(key in raw for key in _CHAT_KEYS):
        return _from_chat(raw)
    if any(key in raw for key in _ANTHROPIC_CACHE_KEYS):
        return _from_anthropic(raw)
    # Without cache fields the Anthropic shape reads the same as the Responses shape.
    if any(key in raw for key in _RESPONSES_KEYS):
        return _from_responses(raw)
    return None


def _from_chat(raw: JsonObject) -> Usage:
    input_tokens = token_count(raw.get("prompt_tokens"))
    output_tokens = token_count(raw.get("completion_tokens"))
    return _usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=_total(raw, input_tokens, output_tokens),
        input_details={
            "cached_tokens": _detail(raw, "prompt_tokens_details", "cached_tokens"),
            "cache_write_tokens": _detail(raw, "prompt_tokens_details", "cache_write_tokens"),
        },
        output_details={
            "reasoning_tokens": _detail(raw, "completion_tokens_details", "reasoning_tokens")
        },
    )


def _from_anthropic(raw: JsonObject) -> Usage:
    # Anthropic's `input_tokens` counts only the uncached part of the prompt, whereas
    # Responses `input_tokens` is the whole prompt with cached tokens as a subset.
    cache_read = token_count(raw.get("cache_read_input_tokens"))
    cache_creation = token_count(raw.get("cache_creation_input_tokens"))
    input_tokens = token_count(raw.get("input_tokens")) + cache_read + cache_creation
    output_tokens = token_count(raw.get("output_tokens"))
    input_details = {"cached_tokens": cache_read}
    # Cache writes are billed differently from plain input; OpenAI reports them as
    # `cache_write_tokens`.
    input_details["cache_write_tokens"] = cache_creation
    return _usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
        input_details=input_details,
        output_details={"reasoning_tokens": 0},
    )


def _from_responses(raw: JsonObject) -> Usage:
    input_tokens = token_count(raw.get("input_tokens"))
    output_tokens = token_count(raw.get("output_tokens"))
    # Extra detail keys (such as `cache_write_tokens` from an earlier conversion) are
    # kept so that re-normalising a stored usage object loses nothing.
    input_details = _clean_details(raw.get("input_tokens_details"))
    input_details.setdefault("cached_tokens", 0)
    input_details.setdefault("cache_write_tokens", 0)
    output_details = _clean_details(raw.get("output_tokens_details"))
    output_details.setdefault("reasoning_tokens", 0)
    return _usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=_total(raw, input_tokens, output_tokens),
        input_details=input_details,
        output_details=output_details,
    )


def _usage(
    *,
    input_tokens: int,
    output_tokens: int,
    total_tokens: int,
    input_details: dict[str, int],
    output_details: dict[str, int],
) -> Usage:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": total_tokens,
        "input_tokens_details": input_details,
        "output_tokens_details": output_details,
    }


def _total(raw: JsonObject, input_tokens: int, output_tokens: int) -> int:
    # Only a usable reported total is trusted; a missing or malformed one is recomputed
    # rather than reported as 0.
    if _is_count(raw.get("total_tokens")):
        return token_count(raw["total_tokens"])
    return input_tokens + output_tokens


def _detail(raw: JsonObject, details_key: str, key: str) -> int:
    # Detail objects are optional and are sent as null by some upstreams (vLLM).
    details = raw.get(details_key)
    return token_count(details.get(key)) if isinstance(details, dict) else 0


def _clean_details(details: Any) -> dict[str, int]:
    if not isinstance(details, dict):
        return {}
    return {key: token_count(value) for key, value in details.items()}


def _is_count(value: Any) -> bool:
    # bool is an int subclass, but True is not a token count.
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return isinstance(value, float) and math.isfinite(value) and value.is_integer() and value >= 0


def token_count(value: Any) -> int:
    """`value` as a token count: a non-negative whole number, otherwise 0."""
    return int(value) if _is_count(value) else 0


def add_usage(a: Usage | None, b: Usage | None) -> Usage | None:
    """Field-by-field sum of two Responses usages, nested details included; None is zero."""
    if a is None and b is None:
        return None
    return _sum_fields(a or {}, b or {})


def _sum_fields(a: JsonObject, b: JsonObject) -> JsonObject:
    # Usages and their nested detail objects alike: whatever keys either side holds.
    total: JsonObject = {}
    # Union of keys, in first-seen order, so a detail only one side reports is kept.
    for key in dict.fromkeys([*a, *b]):
        left, right = a.get(key), b.get(key)
        if isinstance(left, dict) or isinstance(right, dict):
            total[key] = _sum_fields(_as_dict(left), _as_dict(right))
        else:
            total[key] = token_count(left) + token_count(right)
    return total


def _as_dict(value: Any) -> JsonObject:
    return value if isinstance(value, dict) else {}
