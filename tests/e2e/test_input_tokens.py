"""POST /v1/responses/input_tokens through the SDK: the upstream's own count where it has a
`/tokenize` (the fake's counts a token a word), the documented estimate where it has none
(the demo upstream), with the `previous_response_id` chain and truncation taken into
account, and bad requests named."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import openai
import pytest

from app.config import Settings
from app.demo.upstream import create_app as create_demo_app
from tests.fakes.upstream.app import SMALL_MODEL, SMALL_MODEL_CONTEXT_TOKENS
from tests.support.clients import sdk_client
from tests.support.servers import running_api, serve

Json = dict[str, object]


@pytest.fixture(scope="module")
def estimating(make_settings: Callable[..., Settings]) -> Iterator[openai.OpenAI]:
    """The SDK on an API whose upstream (the demo) has no `/tokenize`, and no tools."""
    with serve(create_demo_app(pace_s=0), ready_path="/models", lifespan="off") as demo:
        settings = make_settings(upstream_base_url=f"{demo}/v1", tools_file="")
        with running_api(settings) as api, sdk_client(api) as sdk:
            yield sdk


def test_the_upstreams_tokenizer_counts_the_instructions_and_input(client: openai.OpenAI) -> None:
    counted = client.responses.input_tokens.count(
        model="demo", instructions="Be brief.", input="one two three"
    )
    assert counted.object == "response.input_tokens"
    assert counted.input_tokens == 5  # words, as the fake's tokenizer counts them
    without_model = client.responses.input_tokens.count(input="one two three")
    assert without_model.input_tokens == 3


def test_a_previous_response_is_counted_with_the_new_input(client: openai.OpenAI) -> None:
    first = client.responses.create(model="demo", input="alpha beta")
    assert first.output_text == "Hello! You said: alpha beta"
    counted = client.responses.input_tokens.count(
        model="demo", previous_response_id=first.id, input="gamma"
    )
    assert counted.input_tokens == 2 + 5 + 1


def test_truncation_auto_counts_what_would_be_sent(client: openai.OpenAI) -> None:
    long_input = [{"role": "user", "content": f"message {n} has five words"} for n in range(20)]
    whole = client.responses.input_tokens.count(model=SMALL_MODEL, input=long_input)  # type: ignore[arg-type]
    fitted = client.responses.input_tokens.count(
        model=SMALL_MODEL,
        input=long_input,  # type: ignore[arg-type]
        truncation="auto",
    )
    assert whole.input_tokens == 100
    assert fitted.input_tokens == SMALL_MODEL_CONTEXT_TOKENS


def test_without_a_tokenizer_the_count_is_the_documented_estimate(
    estimating: openai.OpenAI,
) -> None:
    # 8 bytes: 2 tokens, 4 for the message, 3 for the start of the reply.
    assert estimating.responses.input_tokens.count(model="demo", input="abcdefgh").input_tokens == 9
    assert estimating.responses.input_tokens.count(model="demo", input="a").input_tokens >= 1


def test_the_estimate_never_falls_as_the_input_grows(estimating: openai.OpenAI) -> None:
    grown: list[Json] = []
    counts = []
    turns: list[Json] = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": "Let me look."},
        {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": '{"c":1}'},
        {"type": "function_call_output", "call_id": "c1", "output": "Sunny"},
        {"role": "user", "content": [{"type": "input_text", "text": "Et à Lyon ?"}]},
    ]
    for turn in turns:
        grown.append(turn)
        count = estimating.responses.input_tokens.count(model="demo", input=grown)  # type: ignore[arg-type]
        counts.append(count.input_tokens)
    assert counts == sorted(counts) and len(set(counts)) == len(counts)
    with_instructions = estimating.responses.input_tokens.count(
        model="demo",
        input=grown,  # type: ignore[arg-type]
        instructions="Answer in French.",
    )
    assert with_instructions.input_tokens > counts[-1]


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"model": "demo", "input": "hi", "stream": True}, "stream", "unknown_parameter"),
        ({"model": "demo", "conversation": "conv_1"}, "conversation", "unsupported_parameter"),
        ({"model": "demo", "input": [{"type": "odd"}]}, "input[0].type", "invalid_value"),
        ({"model": "", "input": "hi"}, "model", "invalid_value"),
        ({"model": "demo", "input": "hi", "truncation": "maybe"}, "truncation", "invalid_value"),
        (
            {"input": "hi", "previous_response_id": "resp_missing"},
            "previous_response_id",
            "previous_response_not_found",
        ),
    ],
)
def test_a_bad_count_request_is_a_400_naming_its_parameter(
    api_url: str, body: Json, param: str, code: str
) -> None:
    reply = httpx.post(f"{api_url}/v1/responses/input_tokens", json=body, timeout=10)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
