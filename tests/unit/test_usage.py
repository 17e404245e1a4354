"""Unit tests for upstream usage normalisation and usage addition."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from app.engine.chat.usage import add_usage, responses_usage


def usage(
    input_tokens: int,
    output_tokens: int,
    total_tokens: int | None = None,
    cached: int = 0,
    reasoning: int = 0,
    cache_write_tokens: int = 0,
    **extra_input_details: int,
) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens if total_tokens is None else total_tokens,
        "input_tokens_details": {
            "cached_tokens": cached,
            "cache_write_tokens": cache_write_tokens,
            **extra_input_details,
        },
        "output_tokens_details": {"reasoning_tokens": reasoning},
    }


# --- responses_usage: empty and unrecognised input -----------------------------------------


@pytest.mark.parametrize(
    "raw",
    [None, {}, {"foo": 1}, {"total_tokens": 10}, "12", 12, ["prompt_tokens"]],
)
def test_none_empty_or_unrecognised_usage_gives_none(raw: Any) -> None:
    assert responses_usage(raw) is None


# --- responses_usage: OpenAI chat shape ----------------------------------------------------


def test_chat_usage_with_details() -> None:
    raw = {
        "prompt_tokens": 100,
        "completion_tokens": 40,
        "total_tokens": 140,
        "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 12, "audio_tokens": 0},
    }

    assert responses_usage(raw) == usage(100, 40, 140, cached=64, reasoning=12)


@pytest.mark.parametrize(
    "details",
    [
        {},
        {"prompt_tokens_details": None, "completion_tokens_details": None},
        {"prompt_tokens_details": {}, "completion_tokens_details": {}},
        {"prompt_tokens_details": {"cached_tokens": None}},
        {"prompt_tokens_details": "odd", "completion_tokens_details": 3},
    ],
)
def test_chat_usage_with_missing_or_null_details(details: dict[str, Any]) -> None:
    raw = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15, **details}

    assert responses_usage(raw) == usage(10, 5, 15)


def test_chat_usage_without_total_sums_input_and_output() -> None:
    assert responses_usage({"prompt_tokens": 7, "completion_tokens": 3}) == usage(7, 3, 10)


def test_chat_usage_reported_total_is_kept() -> None:
    # Some upstreams count extra tokens (e.g. tool prompts) only in the total.
    raw = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 12}

    assert responses_usage(raw)["total_tokens"] == 12


def test_chat_usage_with_only_prompt_tokens() -> None:
    assert responses_usage({"prompt_tokens": 9}) == usage(9, 0, 9)


# --- responses_usage: Anthropic shape ------------------------------------------------------


def test_anthropic_usage_adds_cache_tokens_to_input() -> None:
    raw = {
        "input_tokens": 20,
        "output_tokens": 50,
        "cache_read_input_tokens": 1000,
        "cache_creation_input_tokens": 300,
    }

    result = responses_usage(raw)

    assert result == {
        "input_tokens": 1320,
        "output_tokens": 50,
        "total_tokens": 1370,
        "input_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 300},
        "output_tokens_details": {"reasoning_tokens": 0},
    }


def test_anthropic_usage_with_cache_read_only_reports_zero_cache_writes() -> None:
    raw = {"input_tokens": 5, "output_tokens": 2, "cache_read_input_tokens": 10}

    result = responses_usage(raw)

    assert result == usage(15, 2, 17, cached=10)
    assert result is not None
    assert result["input_tokens_details"]["cache_write_tokens"] == 0


@pytest.mark.parametrize("cache_tokens", [0, None], ids=["zero", "null"])
def test_anthropic_usage_with_zero_or_null_cache_fields_reports_zero_cache_tokens(
    cache_tokens: int | None,
) -> None:
    raw = {
        "input_tokens": 5,
        "output_tokens": 2,
        "cache_read_input_tokens": cache_tokens,
        "cache_creation_input_tokens": cache_tokens,
    }

    assert responses_usage(raw) == usage(5, 2, 7, cached=0, cache_write_tokens=0)


def test_anthropic_usage_without_cache_fields_reads_like_responses_shape() -> None:
    assert responses_usage({"input_tokens": 11, "output_tokens": 4}) == usage(11, 4, 15)


# --- responses_usage: Responses shape ------------------------------------------------------


def test_responses_shape_is_accepted_as_is() -> None:
    raw = usage(100, 20, 120, cached=30, reasoning=5)

    assert responses_usage(raw) == raw


def test_responses_shape_keeps_extra_detail_keys() -> None:
    raw = usage(100, 20, cached=30, cache_write_tokens=8)

    assert responses_usage(raw) == raw


def test_responses_shape_fills_missing_details_and_total() -> None:
    raw = {"input_tokens": 3, "output_tokens": 4, "input_tokens_details": {}}

    assert responses_usage(raw) == usage(3, 4, 7)


def test_responses_usage_does_not_mutate_or_alias_input() -> None:
    raw = usage(1, 2, cached=1)
    before = copy.deepcopy(raw)

    result = responses_usage(raw)
    assert result is not None
    result["input_tokens_details"]["cached_tokens"] = 99

    assert raw == before


# --- responses_usage: odd values -----------------------------------------------------------


@pytest.mark.parametrize("odd", [None, "12", -5, True, 1.5, float("nan"), float("inf"), [], {}])
def test_odd_chat_values_count_as_zero(odd: Any) -> None:
    raw = {
        "prompt_tokens": odd,
        "completion_tokens": 4,
        "total_tokens": odd,
        "prompt_tokens_details": {"cached_tokens": odd},
        "completion_tokens_details": {"reasoning_tokens": odd},
    }

    assert responses_usage(raw) == usage(0, 4, 4)


@pytest.mark.parametrize("odd", [None, "7", -1, False, 2.5])
def test_odd_anthropic_values_count_as_zero(odd: Any) -> None:
    raw = {
        "input_tokens": odd,
        "output_tokens": 3,
        "cache_read_input_tokens": 10,
        "cache_creation_input_tokens": odd,
    }

    result = responses_usage(raw)

    assert result is not None
    assert result["input_tokens"] == 10
    assert result["total_tokens"] == 13
    assert result["input_tokens_details"]["cached_tokens"] == 10


def test_whole_float_counts_are_accepted() -> None:
    assert responses_usage({"prompt_tokens": 10.0, "completion_tokens": 2.0}) == usage(10, 2)


@pytest.mark.parametrize("odd", ["x", None, -3])
def test_odd_responses_shape_values_count_as_zero(odd: Any) -> None:
    raw = {
        "input_tokens": odd,
        "output_tokens": 2,
        "input_tokens_details": {"cached_tokens": odd},
        "output_tokens_details": "nonsense",
    }

    assert responses_usage(raw) == usage(0, 2, 2)


# --- add_usage -----------------------------------------------------------------------------


def test_add_usage_both_none_is_none() -> None:
    assert add_usage(None, None) is None


@pytest.mark.parametrize("left_is_none", [True, False])
def test_add_usage_with_none_returns_the_other(left_is_none: bool) -> None:
    present = usage(10, 5, cached=2, reasoning=1)

    result = add_usage(None, present) if left_is_none else add_usage(present, None)

    assert result == present


def test_add_usage_with_none_returns_a_copy() -> None:
    present = usage(10, 5, cached=2)

    result = add_usage(None, present)
    assert result is not None
    result["input_tokens_details"]["cached_tokens"] = 100

    assert present["input_tokens_details"]["cached_tokens"] == 2


def test_add_usage_sums_every_field_including_details() -> None:
    a = usage(100, 20, 120, cached=50, reasoning=5)
    b = usage(30, 7, 37, cached=10, reasoning=3)

    assert add_usage(a, b) == usage(130, 27, 157, cached=60, reasoning=8)


def test_add_usage_keeps_detail_keys_only_one_side_has() -> None:
    a = usage(100, 20, cached=50, cache_write_tokens=30)
    b = usage(10, 2, cached=5)

    result = add_usage(a, b)

    assert result == usage(110, 22, cached=55, cache_write_tokens=30)


def test_add_usage_treats_missing_details_as_zero() -> None:
    a = {"input_tokens": 4, "output_tokens": 1, "total_tokens": 5}
    b = usage(6, 2, cached=3, reasoning=1)

    assert add_usage(a, b) == usage(10, 3, cached=3, reasoning=1)


def test_add_usage_does_not_mutate_inputs() -> None:
    a = usage(1, 1, cached=1)
    b = usage(2, 2, reasoning=2)
    before = (copy.deepcopy(a), copy.deepcopy(b))

    add_usage(a, b)

    assert (a, b) == before


def test_add_usage_of_normalised_upstream_usages() -> None:
    first = responses_usage({"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60})
    second = responses_usage({"input_tokens": 5, "output_tokens": 8, "cache_read_input_tokens": 45})

    assert add_usage(first, second) == usage(100, 18, 118, cached=45)
