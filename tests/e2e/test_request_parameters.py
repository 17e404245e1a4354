"""Parameters at the edges of the contract: `null` for an optional parameter; `reasoning`,
whose effort is checked against the SDK's values and forwarded upstream; and an MCP tool's
`allowed_tools` filter, which decides what the model may see and call."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.upstream.spy import requests_mentioning
from tests.support.mcp_server import McpTestServer

OPTIONAL_PARAMETERS = [
    "instructions",
    "previous_response_id",
    "stream",
    "stream_options",
    "background",
    "store",
    "service_tier",
    "temperature",
    "top_p",
    "max_output_tokens",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "text",
    "reasoning",
    "metadata",
    "truncation",
    "include",
    "user",
]


def test_null_for_an_optional_parameter_means_not_given(api_url: str) -> None:
    body = {"model": "demo", "input": "nulls", **dict.fromkeys(OPTIONAL_PARAMETERS)}
    reply = httpx.post(f"{api_url}/v1/responses", json=body, timeout=30)

    assert reply.status_code == 200, reply.text
    response = reply.json()
    assert response["status"] == "completed"
    # Echoed with the defaults, as if the parameters had not been sent.
    assert (response["background"], response["store"], response["metadata"]) == (False, True, {})
    assert response["temperature"] == 1.0


def test_reasoning_effort_is_forwarded_and_echoed(client: openai.OpenAI, upstream_url: str) -> None:
    marker = f"think-{secrets.token_hex(3)}"
    response = client.responses.create(
        model="demo", input=marker, reasoning={"effort": "low", "summary": "auto"}
    )

    assert response.status == "completed"
    assert response.reasoning is not None
    assert (response.reasoning.effort, response.reasoning.summary) == ("low", "auto")
    [sent] = requests_mentioning(upstream_url, marker)
    assert sent["body"]["reasoning_effort"] == "low"


CLOSED_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
OPEN_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}


def test_function_tools_echo_the_strict_they_were_sent_upstream_with(
    client: openai.OpenAI, upstream_url: str
) -> None:
    marker = f"strict-{secrets.token_hex(3)}"
    tools: list[Any] = [
        {"type": "function", "name": "closed", "parameters": CLOSED_SCHEMA, "strict": None},
        {"type": "function", "name": "open", "parameters": OPEN_SCHEMA, "strict": None},
        {"type": "function", "name": "chosen", "parameters": OPEN_SCHEMA, "strict": True},
        {"type": "function", "name": "declined", "parameters": CLOSED_SCHEMA, "strict": False},
    ]
    response = client.responses.create(model="demo", input=marker, tools=tools)

    [sent] = requests_mentioning(upstream_url, marker)
    functions = [tool["function"] for tool in sent["body"]["tools"]]
    # The client's tools; the server's registered ones (TOOLS_FILE) are offered next to them.
    names = {tool["name"] for tool in tools}
    sent_strict = {f["name"]: f["strict"] for f in functions if f["name"] in names}
    assert sent_strict == {"closed": True, "open": False, "chosen": True, "declined": False}
    for shown in (response, client.responses.retrieve(response.id)):
        echoed = {tool.name: tool.strict for tool in shown.tools}  # type: ignore[union-attr]
        assert echoed == sent_strict


@pytest.mark.parametrize(
    ("reasoning", "param"),
    [
        ({"effort": "enormous"}, "reasoning.effort"),
        ({"summary": "verbose"}, "reasoning.summary"),
    ],
)
def test_an_unknown_reasoning_value_is_a_400_naming_it(
    api_url: str, reasoning: dict[str, str], param: str
) -> None:
    body = {"model": "demo", "input": "hi", "reasoning": reasoning}
    reply = httpx.post(f"{api_url}/v1/responses", json=body, timeout=30)

    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == param


@pytest.mark.parametrize(
    ("allowed_tools", "offered"),
    [
        ({"read_only": True}, ["add", "echo"]),
        ({"read_only": False}, ["fail", "mixed", "secret_header", "sleep", "structured"]),
        ({"tool_names": ["add", "fail"], "read_only": True}, ["add"]),
        ({"tool_names": ["add", "fail"]}, ["add", "fail"]),
        (["echo"], ["echo"]),
    ],
)
def test_the_mcp_allowed_tools_filter_decides_what_the_model_sees(
    client: openai.OpenAI,
    mcp_server: McpTestServer,
    allowed_tools: dict[str, Any] | list[str],
    offered: list[str],
) -> None:
    tool: Any = {
        "type": "mcp",
        "server_label": "calc",
        "server_url": mcp_server.url,
        "require_approval": "never",
        "allowed_tools": allowed_tools,
    }
    response = client.responses.create(
        model="demo", input=f"which tools? {secrets.token_hex(3)}", tools=[tool]
    )

    listed = response.output[0]
    assert listed.type == "mcp_list_tools"
    assert sorted(t.name for t in listed.tools) == offered


@pytest.mark.parametrize(
    ("allowed_tools", "param"),
    [
        ({"read_only": "yes"}, "tools[0].allowed_tools.read_only"),
        ({"tool_names": ["add"], "writes": True}, "tools[0].allowed_tools.writes"),
    ],
)
def test_a_malformed_allowed_tools_filter_is_a_400(
    api_url: str, mcp_server: McpTestServer, allowed_tools: dict[str, Any], param: str
) -> None:
    tool = {
        "type": "mcp",
        "server_label": "calc",
        "server_url": mcp_server.url,
        "require_approval": "never",
        "allowed_tools": allowed_tools,
    }
    body = {"model": "demo", "input": "hi", "tools": [tool]}
    reply = httpx.post(f"{api_url}/v1/responses", json=body, timeout=30)

    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == param


def test_include_takes_the_sdks_values_only(api_url: str) -> None:
    known = {"model": "demo", "input": "hi", "include": ["message.output_text.logprobs"]}
    assert httpx.post(f"{api_url}/v1/responses", json=known, timeout=30).status_code == 200

    unknown = {"model": "demo", "input": "hi", "include": ["everything.please"]}
    reply = httpx.post(f"{api_url}/v1/responses", json=unknown, timeout=30)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == "include[0]"
