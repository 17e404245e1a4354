"""`parse_create_request`: the accepted forms of a create request, normalised, and the
`param` and `code` of each rejection."""

from __future__ import annotations

from typing import Any, get_args

import pytest
from openai.types.responses import ResponseIncludable

from app.engine.errors import RequestError
from app.engine.include import INCLUDABLE, SUPPORTED, check_include
from app.engine.request import parse_create_request

MCP = {
    "type": "mcp",
    "server_label": "calc",
    "server_url": "https://mcp.test/mcp",
    "require_approval": "never",
}
FUNCTION = {"type": "function", "name": "f", "parameters": {"type": "object"}}


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "m", **fields}


def test_a_string_input_is_one_user_message() -> None:
    request, items = parse_create_request(body(input="Hello"))

    assert request.model == "m"
    [message] = items
    assert message["id"].startswith("msg_")
    assert {k: v for k, v in message.items() if k != "id"} == {
        "type": "message",
        "role": "user",
        "status": "completed",
        "content": [{"type": "input_text", "text": "Hello"}],
    }


def test_no_input_is_no_items() -> None:
    _, items = parse_create_request(body())

    assert items == []


def test_item_forms_are_normalised() -> None:
    _, items = parse_create_request(
        body(
            input=[
                {"role": "system", "content": "Rules."},
                {"role": "assistant", "content": "Earlier answer"},
                {
                    "type": "message",
                    "id": "msg_given",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "Look:"},
                        {"type": "input_image", "image_url": "https://img.test/a.png"},
                    ],
                },
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "42"},
            ]
        )
    )

    system, assistant, user, call, output = items
    assert system["content"] == [{"type": "input_text", "text": "Rules."}]
    # An assistant's string content is model output.
    assert assistant["content"] == [
        {"type": "output_text", "text": "Earlier answer", "annotations": []}
    ]
    assert user["id"] == "msg_given"  # a given id is kept
    assert [part["type"] for part in user["content"]] == ["input_text", "input_image"]
    assert call["id"].startswith("fc_")
    assert (call["call_id"], call["name"], call["arguments"], call["status"]) == (
        "c1",
        "f",
        "{}",
        "completed",
    )
    assert output["id"].startswith("fco_")
    assert (output["call_id"], output["output"]) == ("c1", "42")
    assert len({item["id"] for item in items}) == 5


def test_parameters_are_kept_on_the_request() -> None:
    request, _ = parse_create_request(
        body(
            input="hi",
            tools=[FUNCTION, MCP],
            tool_choice={"type": "function", "name": "f"},
            max_tool_calls=2,
            max_output_tokens=100,
            temperature=0.5,
            text={"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}}},
            stream=True,
            stream_options={"include_obfuscation": False},
        )
    )

    assert request.max_tool_calls == 2
    # The function tool's `strict` is settled: what Ferry sends upstream and echoes.
    assert request.tools == [{**FUNCTION, "strict": False}, MCP]
    assert request.text is not None and request.text.format.name == "out"


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({"model": None}, "model", "missing_required_parameter"),  # null is not given
        ({"input": 42}, "input", "invalid_type"),
        ({"input": {"role": "user"}}, "input", "invalid_type"),
        ({"input": [{"type": "mystery"}]}, "input[0].type", "invalid_value"),
        # An item that is not an object fails the whole `input`'s type.
        ({"input": ["not an object"]}, "input", "invalid_type"),
        ({"input": [{"role": "wizard", "content": "hi"}]}, "input[0].role", "invalid_value"),
        ({"input": [{"role": "user", "content": 7}]}, "input[0].content", "invalid_type"),
        (
            {"input": [{"role": "user", "content": [{"type": "audio"}]}]},
            "input[0].content[0].type",
            "invalid_value",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_text"}]}]},
            "input[0].content[0].text",
            "missing_required_parameter",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_text", "text": 1}]}]},
            "input[0].content[0].text",
            "invalid_type",
        ),
        (
            {
                "input": [
                    {
                        "role": "user",
                        "content": [{"type": "input_image", "image_url": "u", "detail": "huge"}],
                    }
                ]
            },
            "input[0].content[0].detail",
            "invalid_value",
        ),
        (
            {"input": [{"type": "function_call_output", "output": "x"}]},
            "input[0].call_id",
            "missing_required_parameter",
        ),
        (
            {"input": [{"type": "function_call_output", "call_id": "c", "output": 5}]},
            "input[0].output",
            "invalid_type",
        ),
        (
            {"input": [{"type": "function_call", "call_id": "c", "arguments": "{}"}]},
            "input[0].name",
            "missing_required_parameter",
        ),
        ({"temperature": 3}, "temperature", "invalid_value"),
        ({"max_output_tokens": 0}, "max_output_tokens", "invalid_value"),
        ({"max_tool_calls": 0}, "max_tool_calls", "invalid_value"),
        ({"top_logprobs": -1}, "top_logprobs", "invalid_value"),
        ({"top_logprobs": 21}, "top_logprobs", "invalid_value"),
        ({"top_logprobs": 2.5}, "top_logprobs", "invalid_value"),
        ({"include": ["everything"]}, "include[0]", "invalid_value"),
        (
            {"include": ["message.output_text.logprobs", "file_search_call.results"]},
            "include[1]",
            "unsupported_value",
        ),
        ({"tool_choice": "sometimes"}, "tool_choice", "invalid_value"),
        ({"no_such_parameter": 1}, "no_such_parameter", "unknown_parameter"),
        ({"stream_options": {"include_obfuscation": False}}, "stream_options", "invalid_value"),
        ({"text": {"format": {"type": "json_schema"}}}, "text.format", "invalid_value"),
        ({"tools": [{"type": "function"}]}, "tools[0].name", "missing_required_parameter"),
        (
            {"tools": [{"type": "function", "name": "f", "parameters": "x"}]},
            "tools[0].parameters",
            "invalid_type",
        ),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type", "invalid_value"),
        ({"tools": [{**FUNCTION, "strict": "yes"}]}, "tools[0].strict", "invalid_type"),
        (
            {"tools": [{**MCP, "require_approval": "sometimes"}]},
            "tools[0].require_approval",
            "invalid_value",
        ),
        (
            {"tools": [{**MCP, "require_approval": True}]},
            "tools[0].require_approval",
            "invalid_type",
        ),
        (
            {"tools": [{**MCP, "require_approval": {"often": {}}}]},
            "tools[0].require_approval.often",
            "unknown_parameter",
        ),
        (
            {"tools": [{**MCP, "require_approval": {"always": ["add"]}}]},
            "tools[0].require_approval.always",
            "invalid_type",
        ),
        (
            {"tools": [{**MCP, "require_approval": {"never": {"tool_names": "add"}}}]},
            "tools[0].require_approval.never.tool_names",
            "invalid_type",
        ),
        (
            {"tools": [{**MCP, "require_approval": {"never": {"read_only": 1}}}]},
            "tools[0].require_approval.never.read_only",
            "invalid_type",
        ),
        ({"tools": [{**MCP, "server_url": "ftp://x"}]}, "tools[0].server_url", "invalid_value"),
        ({"tools": [{**MCP, "server_label": "a b"}]}, "tools[0].server_label", "invalid_value"),
        ({"tools": [MCP, MCP]}, "tools[1].server_label", "invalid_value"),
        ({"tools": [{**MCP, "allowed_tools": [1]}]}, "tools[0].allowed_tools", "invalid_type"),
        ({"tools": [{**MCP, "headers": {"a": 1}}]}, "tools[0].headers", "invalid_type"),
        ({"tools": [{**MCP, "colour": "red"}]}, "tools[0].colour", "unknown_parameter"),
        (
            {"tools": [FUNCTION], "tool_choice": {"type": "function", "name": "g"}},
            "tool_choice",
            "invalid_value",
        ),
    ],
)
def test_a_bad_request_names_the_parameter_at_fault(
    fields: dict[str, Any], param: str, code: str
) -> None:
    with pytest.raises(RequestError) as info:
        parse_create_request(body(**fields))

    assert (info.value.param, info.value.code) == (param, code)
    assert info.value.message


def test_a_missing_model_is_a_missing_required_parameter() -> None:
    with pytest.raises(RequestError) as info:
        parse_create_request({"input": "hi"})

    assert (info.value.param, info.value.code) == ("model", "missing_required_parameter")
    assert info.value.message == "Missing required parameter: 'model'."


@pytest.mark.parametrize("decoded", [[], "text", 3, None])
def test_a_body_that_is_not_an_object_is_invalid_json_with_no_param(decoded: Any) -> None:
    with pytest.raises(RequestError) as info:
        parse_create_request(decoded)

    assert (info.value.param, info.value.code) == (None, "invalid_json")


@pytest.mark.parametrize("top_logprobs", [0, 20])
def test_top_logprobs_takes_0_to_20(top_logprobs: int) -> None:
    request, _ = parse_create_request(
        body(top_logprobs=top_logprobs, include=["message.output_text.logprobs"])
    )

    assert request.top_logprobs == top_logprobs


def test_the_include_values_ferry_honours_are_accepted() -> None:
    request, _ = parse_create_request(body(include=sorted(SUPPORTED)))

    assert request.include == sorted(SUPPORTED)


BUILT_IN_TOOL_OUTPUTS = sorted(set(INCLUDABLE) - SUPPORTED)


def test_the_include_values_are_the_sdks() -> None:
    assert sorted(INCLUDABLE) == sorted(get_args(ResponseIncludable))


@pytest.mark.parametrize("value", BUILT_IN_TOOL_OUTPUTS)
def test_including_a_built_in_tools_output_is_refused_naming_the_tool(value: str) -> None:
    with pytest.raises(RequestError) as info:
        check_include(["message.output_text.logprobs", value])

    assert (info.value.param, info.value.code) == ("include[1]", "unsupported_value")
    tool = value.split("_call")[0]  # file_search, web_search, computer, code_interpreter
    assert f"no built-in '{tool}" in info.value.message


@pytest.mark.parametrize("conversation", ["conv_abc", {"id": "conv_abc"}])
def test_a_conversation_is_named_by_id_or_by_object(conversation: Any) -> None:
    request, _ = parse_create_request(body(conversation=conversation))

    assert request.conversation_id == "conv_abc"


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        (
            {"conversation": "conv_abc", "previous_response_id": "resp_1"},
            "conversation",
            "mutually_exclusive_parameters",
        ),
        ({"conversation": "abc"}, "conversation", "invalid_value"),
        ({"conversation": "conv_a b"}, "conversation", "invalid_value"),
        ({"conversation": 3}, "conversation", "invalid_value"),
        ({"conversation": {"id": 3}}, "conversation.id", "invalid_value"),
        ({"conversation": {}}, "conversation.id", "missing_required_parameter"),
        ({"conversation": {"id": "conv_a", "x": 1}}, "conversation.x", "unknown_parameter"),
    ],
)
def test_a_bad_conversation_names_the_parameter(
    fields: dict[str, Any], param: str, code: str
) -> None:
    with pytest.raises(RequestError) as info:
        parse_create_request(body(**fields))

    assert (info.value.param, info.value.code) == (param, code)
