"""Property-based tests driven by the OpenAPI document (schemathesis) against a running API
and worker: whatever the document allows, and what it does not, is answered without a 5xx;
every 4xx is the OpenAI error envelope; and what the document promises (statuses, media
types, bodies) is what comes back. The search is bounded and the same on every run."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.config import Settings
from app.http.openapi import openapi_document
from app.http.routes import MAX_IDEMPOTENCY_KEY_CHARS
from tests.support.database import migrated_scratch_database
from tests.support.processes import command_env, running_worker
from tests.support.servers import running_api
from tests.support.settings import as_environment
from tests.support.sse import iter_frames

ENVELOPE_KEYS = {"message", "type", "param", "code"}
# Per operation; with five operations the whole search stays well under half a minute.
EXAMPLES = 30
# A flex request is held until its response ends; the worker ends it long before this.
FLEX_TIMEOUT_S = 20

SCHEMA = schemathesis.openapi.from_dict(openapi_document()).include(path_regex=r"^/v1/")


@pytest.fixture(scope="module")
def fuzzed_api(
    postgres_admin_url: str,
    suite_settings: dict[str, Any],
    make_settings: Callable[..., Settings],
) -> Iterator[str]:
    """An API and a worker on a database of their own: background and flex requests run to
    their end, and nothing the search creates reaches the other tests."""
    with migrated_scratch_database(postgres_admin_url) as url:
        values = {**suite_settings, "database_url": url, "flex_timeout_s": FLEX_TIMEOUT_S}
        env = command_env(**as_environment(values))
        with (
            running_worker(env, concurrency=4),
            running_api(make_settings(database_url=url, flex_timeout_s=FLEX_TIMEOUT_S)) as api,
        ):
            yield api


def own_idempotency_key(case: schemathesis.Case) -> None:
    """Tie a generated Idempotency-Key to its body. The generator reuses a handful of keys,
    and the same key with another body is rightly a 409 before the body is even read: the
    search would explore little else. One too long to use stays as it is (a 400)."""
    key = (case.headers or {}).get("Idempotency-Key")
    if case.headers is None or not key or len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
        return
    body = json.dumps(case.body, sort_keys=True, default=str).encode()
    digest = hashlib.sha256(body).hexdigest()[:16]
    case.headers["Idempotency-Key"] = key[: MAX_IDEMPOTENCY_KEY_CHARS - 17] + "-" + digest


@pytest.fixture(scope="module")
def known_ids(fuzzed_api: str) -> list[str]:
    """Responses that exist, in each way one can: generated ids would name none of them."""
    url = f"{fuzzed_api}/v1/responses"
    ids = []
    for body in (
        {"input": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}]},
        {"input": "later", "background": True},
        {"input": "no hurry", "service_tier": "flex"},
    ):
        reply = httpx.post(url, json={"model": "demo", **body}, timeout=30)
        assert reply.status_code == 200, reply.text
        ids.append(reply.json()["id"])
    logged = {"model": "demo", "input": "logged", "background": True, "stream": True}
    with httpx.stream("POST", url, json=logged, timeout=30) as reply:
        _, created = next(iter_frames(reply))
        ids.append(created["response"]["id"])
    return ids


def name_a_known_response(case: schemathesis.Case, api: str, known_ids: list[str]) -> None:
    """Two generated ids in three become one of `known_ids` (the same one for the same
    generated id), or for a DELETE a response made for it: the other parameters then meet a
    response that exists."""
    generated = (case.path_parameters or {}).get("response_id")
    if case.path_parameters is None or generated is None:
        return
    number = int(hashlib.sha256(str(generated).encode()).hexdigest(), 16)
    if not number % 3:
        return
    if case.method.upper() == "DELETE":
        reply = httpx.post(f"{api}/v1/responses", json={"model": "demo", "input": "hi"}, timeout=30)
        case.path_parameters["response_id"] = reply.json()["id"]
    else:
        case.path_parameters["response_id"] = known_ids[number % len(known_ids)]


def test_the_api_serves_the_document(fuzzed_api: str) -> None:
    reply = httpx.get(f"{fuzzed_api}/openapi.json", timeout=30)
    assert reply.status_code == 200
    assert reply.json() == openapi_document()


@SCHEMA.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_request_gets_a_5xx(
    case: schemathesis.Case, fuzzed_api: str, known_ids: list[str]
) -> None:
    own_idempotency_key(case)
    name_a_known_response(case, fuzzed_api, known_ids)
    response = case.call(base_url=fuzzed_api, timeout=60)
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
    if 400 <= response.status_code < 500:
        error = response.json()["error"]
        assert set(error) == ENVELOPE_KEYS, response.text
        assert isinstance(error["message"], str) and error["message"]
