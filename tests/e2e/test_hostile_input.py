"""Hostile and malformed requests, sent as raw HTTP: every one gets a 4xx in the OpenAI error
envelope, names the offending `param` where there is one, and leaves nothing in the database.

A property-based part throws generated bodies at the API (bounded in examples and time):
whatever arrives, the answer is never a 5xx, and a request that is accepted is stored whole
(GET returns it).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.sockets import raw_socket, read_turn

ENVELOPE_KEYS = {"message", "type", "param", "code"}


def count_responses(db: psycopg.Connection[dict[str, Any]]) -> int:
    row = db.execute("SELECT count(*) AS n FROM responses").fetchone()
    assert row is not None
    return int(row["n"])


def post_raw(api_url: str, content: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        f"{api_url}/v1/responses",
        content=content,
        headers={"content-type": "application/json", **(headers or {})},
        timeout=30,
    )


def nested(depth: int) -> str:
    return '{"model": "demo", "input": "hi", "metadata": ' + "[" * depth + "]" * depth + "}"


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        # Nesting far past any real request: the decoder itself would recurse too deep.
        pytest.param(nested(50_000).encode(), None, id="nested-50000"),
        # Deeper than MAX_JSON_DEPTH, shallow enough to decode.
        pytest.param(
            (
                '{"model": "demo", "input": [{"role": "user", "content": "hi", "x": '
                + "[" * 100
                + "]" * 100
                + "}]}"
            ).encode(),
            "input",
            id="nested-100",
        ),
        pytest.param(b'{"model": "demo", "input": "a\\u0000b"}', "input", id="nul-in-input"),
        pytest.param(b'{"model": "de\\u0000mo", "input": "hi"}', "model", id="nul-in-model"),
        pytest.param(
            b'{"model": "demo", "input": "hi", "metadata": {"k\\u0000": "v"}}',
            "metadata",
            id="nul-in-metadata-key",
        ),
        pytest.param(
            b'{"model": "demo", "input": "hi", "tools": [{"type": "function", '
            b'"name": "f\\u0000"}]}',
            "tools[0].name",
            id="nul-in-tool-name",
        ),
        pytest.param(b'{"model": "demo", "input": "\\ud800"}', "input", id="lone-surrogate"),
        pytest.param(
            b'{"model": "demo", "input": "hi", "tools": [{"type": ["function"]}]}',
            "tools[0].type",
            id="tool-type-not-a-string",
        ),
        pytest.param(
            b'{"model": "demo", "input": "hi", "metadata": {"\\udfff": "v"}}',
            "metadata",
            id="lone-surrogate-in-key",
        ),
        pytest.param(b'{"model": "demo", "input": "hi", "temperature": NaN}', None, id="nan"),
        pytest.param(
            b'{"model": "demo", "input": "hi", "max_output_tokens": ' + b"1" + b"0" * 30 + b"}",
            "max_output_tokens",
            id="huge-integer",
        ),
        pytest.param(
            json.dumps(
                {"model": "demo", "input": "hi", "metadata": {f"k{i}": "v" for i in range(17)}}
            ).encode(),
            "metadata",
            id="metadata-17-pairs",
        ),
        pytest.param(
            json.dumps({"model": "demo", "input": "hi", "metadata": {"k" * 65: "v"}}).encode(),
            "metadata",
            id="metadata-long-key",
        ),
        pytest.param(
            json.dumps({"model": "demo", "input": "hi", "metadata": {"k": "v" * 513}}).encode(),
            "metadata.k",
            id="metadata-long-value",
        ),
    ],
)
def test_hostile_body_is_a_400_that_stores_nothing(
    api_url: str, db: psycopg.Connection[dict[str, Any]], raw: bytes, param: str | None
) -> None:
    before = count_responses(db)
    reply = post_raw(api_url, raw)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert set(error) == ENVELOPE_KEYS
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert count_responses(db) == before


def test_metadata_at_the_limits_is_accepted(api_url: str) -> None:
    metadata = {f"{i:02d}" + "k" * 62: "v" * 512 for i in range(16)}
    reply = post_raw(
        api_url, json.dumps({"model": "demo", "input": "hi", "metadata": metadata}).encode()
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["metadata"] == metadata


def test_an_overlong_idempotency_key_is_refused(
    api_url: str, db: psycopg.Connection[dict[str, Any]]
) -> None:
    before = count_responses(db)
    body = json.dumps({"model": "demo", "input": "hi"}).encode()
    reply = post_raw(api_url, body, headers={"Idempotency-Key": "k" * 10_000})
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "Idempotency-Key"
    assert count_responses(db) == before


# --- generated bodies ------------------------------------------------------------------------

# Strings with what breaks storage now and then: NUL, lone surrogates, odd unicode.
hostile_text = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(["\x00", "\ud800", "\udfff", "\u202e", "\ufeff"]),
    ),
    max_size=20,
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    hostile_text,
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(hostile_text, children, max_size=4)
    ),
    max_leaves=20,
)
# Well-formed requests whose strings are hostile: what gets past validation must be storable.
well_formed = st.fixed_dictionaries(
    {
        "model": hostile_text.filter(bool),
        "input": st.one_of(
            hostile_text,
            st.lists(
                st.fixed_dictionaries({"role": st.just("user"), "content": hostile_text}),
                min_size=1,
                max_size=3,
            ),
        ),
    },
    optional={
        "instructions": hostile_text,
        "metadata": st.dictionaries(hostile_text, hostile_text, max_size=4),
        "user": hostile_text,
        "max_output_tokens": st.integers(min_value=1, max_value=10**31),
        "tools": st.lists(
            st.fixed_dictionaries(
                {"type": st.just("function"), "name": hostile_text},
                optional={"parameters": st.dictionaries(hostile_text, json_values, max_size=3)},
            ),
            max_size=2,
        ),
    },
)
# A valid request with one to three parameters replaced by any JSON at all.
PARAMETERS = [
    "model",
    "input",
    "instructions",
    "metadata",
    "max_output_tokens",
    "temperature",
    "tools",
    "tool_choice",
    "text",
    "store",
    "stream",
    "background",
    "reasoning",
    "conversation",
]
garbled = st.dictionaries(st.sampled_from(PARAMETERS), json_values, min_size=1, max_size=3).map(
    lambda replaced: {"model": "demo", "input": "hi", "stream": False, **replaced}
)
bodies = st.one_of(well_formed, garbled)


@settings(
    max_examples=100,
    deadline=None,
    # The same bounded search every run: a fixed seed, and nothing kept between runs.
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies)
def test_no_generated_body_gets_a_5xx(api_url: str, body: dict[str, Any]) -> None:
    # ensure_ascii keeps lone surrogates as \\ud800 escapes: the bytes are valid JSON text.
    reply = post_raw(api_url, json.dumps(body, ensure_ascii=True).encode())
    assert reply.status_code < 500, (body, reply.text)
    if reply.status_code >= 400:
        assert set(reply.json()["error"]) == ENVELOPE_KEYS
        return
    stored = httpx.get(f"{api_url}/v1/responses/{reply.json()['id']}", timeout=30)
    if body.get("store") is False:
        assert stored.status_code == 404  # not kept, by request
        return
    assert stored.status_code == 200
    assert stored.json()["status"] in ("completed", "incomplete", "failed")


@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies)
def test_no_generated_turn_gets_a_5xx_on_a_socket(api_url: str, body: dict[str, Any]) -> None:
    create = {"type": "response.create"}
    create |= {k: v for k, v in body.items() if k not in ("stream", "background")}
    with raw_socket(api_url) as socket:
        socket.send(json.dumps(create, ensure_ascii=True))
        last = read_turn(socket)[-1]
    if last["type"] == "error":
        assert last["status"] < 500, (create, last)
        assert set(last["error"]) == ENVELOPE_KEYS, last
        assert isinstance(last["error"]["code"], str)
    else:
        assert last["response"]["status"] in ("completed", "incomplete", "failed"), last


@pytest.mark.parametrize(
    "response_id", ["resp_%00", "resp_" + "a" * 10_000, "%ED%A0%80", "resp_%F0%9F%98%80"]
)
@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("DELETE", ""), ("POST", "/cancel"), ("GET", "/input_items")],
)
def test_an_id_ferry_could_not_have_made_is_a_404(
    api_url: str, method: str, suffix: str, response_id: str
) -> None:
    reply = httpx.request(method, f"{api_url}/v1/responses/{response_id}{suffix}", timeout=30)
    assert reply.status_code == 404, reply.text
    assert set(reply.json()["error"]) == ENVELOPE_KEYS


# Conversation bodies: items that are messages with hostile text, or any JSON at all.
conversation_bodies = st.fixed_dictionaries(
    {},
    optional={
        "items": st.one_of(
            st.lists(
                st.fixed_dictionaries(
                    {"role": st.just("user"), "content": hostile_text},
                    optional={"id": hostile_text, "type": st.just("message")},
                ),
                max_size=3,
            ),
            json_values,
        ),
        "metadata": st.one_of(st.dictionaries(hostile_text, hostile_text, max_size=4), json_values),
    },
)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=conversation_bodies)
def test_no_generated_conversation_body_gets_a_5xx(api_url: str, body: dict[str, Any]) -> None:
    reply = httpx.post(
        f"{api_url}/v1/conversations",
        content=json.dumps(body, ensure_ascii=True).encode(),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert reply.status_code < 500, (body, reply.text)
    if reply.status_code >= 400:
        assert set(reply.json()["error"]) == ENVELOPE_KEYS
        return
    conversation_id = reply.json()["id"]
    listed = httpx.get(f"{api_url}/v1/conversations/{conversation_id}/items", timeout=30)
    assert listed.status_code == 200
    assert len(listed.json()["data"]) == len(body.get("items") or [])
    added = httpx.post(
        f"{api_url}/v1/conversations/{conversation_id}/items",
        content=json.dumps(body, ensure_ascii=True).encode(),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert added.status_code < 500, (body, added.text)


@pytest.mark.parametrize(
    "conversation_id", ["conv_%00", "conv_" + "a" * 10_000, "%ED%A0%80", "conv_%F0%9F%98%80"]
)
@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("GET", ""),
        ("POST", ""),
        ("DELETE", ""),
        ("GET", "/items"),
        ("POST", "/items"),
        ("GET", "/items/msg_1"),
        ("DELETE", "/items/msg_1"),
    ],
)
def test_a_conversation_id_ferry_could_not_have_made_is_a_404(
    api_url: str, method: str, suffix: str, conversation_id: str
) -> None:
    bodies = {"": {"metadata": {}}, "/items": {"items": [{"role": "user", "content": "x"}]}}
    body = bodies[suffix] if method == "POST" else None
    reply = httpx.request(
        method, f"{api_url}/v1/conversations/{conversation_id}{suffix}", json=body, timeout=30
    )
    assert reply.status_code == 404, reply.text
    assert set(reply.json()["error"]) == ENVELOPE_KEYS
