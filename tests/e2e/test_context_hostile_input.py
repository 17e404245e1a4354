"""Generated bodies thrown at /v1/responses/compact and /v1/responses/input_tokens, as raw
HTTP: whatever arrives, the answer is never a 5xx, and a refusal is OpenAI's envelope."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ENVELOPE_KEYS = {"message", "type", "param", "code"}

hostile_text = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(["\x00", "\ud800", "\u202e", "\ufeff"]),
    ),
    max_size=20,
)
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**30), max_value=10**30),
        st.floats(allow_nan=False, allow_infinity=False),
        hostile_text,
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(hostile_text, children, max_size=3)
    ),
    max_leaves=12,
)
compaction_items = st.fixed_dictionaries(
    {"type": st.just("compaction"), "encrypted_content": hostile_text},
    optional={"id": st.one_of(st.none(), hostile_text)},
)
inputs = st.one_of(
    hostile_text,
    st.lists(
        st.one_of(
            st.fixed_dictionaries({"role": st.just("user"), "content": hostile_text}),
            compaction_items,
            st.dictionaries(hostile_text, json_values, max_size=3),
        ),
        max_size=3,
    ),
)
PARAMETERS = {
    "/v1/responses/compact": [
        "model",
        "input",
        "instructions",
        "previous_response_id",
        "prompt_cache_key",
        "service_tier",
        "store",
    ],
    "/v1/responses/input_tokens": [
        "model",
        "input",
        "instructions",
        "previous_response_id",
        "tools",
        "truncation",
        "conversation",
        "personality",
    ],
}


def garbled(path: str) -> st.SearchStrategy[dict[str, Any]]:
    """A valid body with one to three parameters replaced by any JSON, or hostile input."""
    replaced = st.dictionaries(st.sampled_from(PARAMETERS[path]), json_values, max_size=3)
    return st.tuples(inputs, replaced).map(
        lambda pair: {"model": "demo", "input": pair[0], **pair[1]}
    )


@pytest.mark.parametrize("path", sorted(PARAMETERS))
def test_no_generated_body_gets_a_5xx(api_url: str, path: str) -> None:
    @settings(
        max_examples=60,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(body=garbled(path))
    def check(body: dict[str, Any]) -> None:
        reply = httpx.post(
            f"{api_url}{path}",
            content=json.dumps(body, ensure_ascii=True).encode(),
            headers={"content-type": "application/json"},
            timeout=30,
        )
        assert reply.status_code < 500, (body, reply.text)
        if reply.status_code >= 400:
            assert set(reply.json()["error"]) == ENVELOPE_KEYS

    check()
