"""The demo upstream for real: `python -m app.demo` as a process, and Ferry in front of it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import openai
import pytest

from app.config import Settings
from app.demo.upstream import THOUGHT, create_app
from tests.support.clients import sdk_client
from tests.support.processes import STARTUP_TIMEOUT_S, command_env, free_port, run_command
from tests.support.servers import running_api, serve

WEATHER = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}


def test_module_entry_point_serves() -> None:
    port = free_port()
    args = ("-m", "app.demo", "--host", "127.0.0.1", "--port", str(port))
    with run_command(*args, env=command_env()) as demo:
        # uvicorn logs this once the socket is listening.
        demo.wait_for_line(r"Uvicorn running on", timeout=STARTUP_TIMEOUT_S)
        body = {"model": "demo", "messages": [{"role": "user", "content": "cli"}]}
        reply = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=5)
    assert reply.json()["choices"][0]["message"]["content"] == "Hello! You said: cli"


@pytest.fixture(scope="module")
def sdk(make_settings: Callable[..., Settings]) -> Iterator[openai.OpenAI]:
    """The openai SDK on a Ferry API whose upstream is the demo, as `dev` runs them."""
    with serve(create_app(pace_s=0), ready_path="/models", lifespan="off") as demo:
        with running_api(make_settings(upstream_base_url=f"{demo}/v1")) as api:
            with sdk_client(api) as client:
                yield client


def test_ferry_streams_the_echo(sdk: openai.OpenAI) -> None:
    with sdk.responses.create(model="demo", input="Say hello", stream=True) as stream:
        events = list(stream)
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert deltas == ["Hello! ", "You ", "said: ", "Say ", "hello"]
    assert events[-1].type == "response.completed"
    usage = events[-1].response.usage
    assert usage is not None and usage.output_tokens == 5


def test_ferry_runs_the_tool_call_round_trip(sdk: openai.OpenAI) -> None:
    first = sdk.responses.create(
        model="demo",
        input='What is the weather? Ask get_weather {"city": "Paris"}',
        tools=[WEATHER],  # type: ignore[list-item]
    )
    [call] = first.output
    assert call.type == "function_call"
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})

    second = sdk.responses.create(
        model="demo",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert second.output_text == "Tool results: sunny"


@pytest.mark.parametrize("model", ["demo", "demo-reasoning"])
def test_ferry_shows_the_demos_reasoning_in_either_field(sdk: openai.OpenAI, model: str) -> None:
    with sdk.responses.create(
        model=model, input="Think first", reasoning={"effort": "low"}, stream=True
    ) as stream:
        events = list(stream)

    [thought] = [e.delta for e in events if e.type == "response.reasoning_text.delta"]
    assert thought == THOUGHT
    final = events[-1].response
    reasoning, message = final.output
    assert reasoning.type == "reasoning"
    assert reasoning.content is not None and reasoning.content[0].text == THOUGHT
    assert message.type == "message"
    assert final.output_text == "Hello! You said: Think first"
    assert final.usage is not None
    assert final.usage.output_tokens_details.reasoning_tokens == len(THOUGHT.split())
