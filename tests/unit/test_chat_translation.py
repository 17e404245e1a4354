"""Unit tests for the Responses -> chat-completions translation (messages and request body)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from app.engine.chat.messages import to_chat_messages
from app.engine.chat.request import chat_completion_body

# A 1x1 PNG: a data URL must reach the upstream byte for byte.
PNG_DATA_URL = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAHnOu2wAAAABJRU5ErkJggg=="
)


def message(role: str, content: Any) -> dict[str, Any]:
    return {"type": "message", "role": role, "content": content}


def function_call(call_id: str, name: str = "get_weather", arguments: str = "{}") -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": f"fc_{call_id}",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": "completed",
    }


def function_call_output(call_id: str, output: Any) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": output}


def tool_call(call_id: str, name: str = "get_weather", arguments: str = "{}") -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


# --- instructions ------------------------------------------------------------------------


def test_instructions_become_leading_system_message() -> None:
    messages = to_chat_messages("Be terse.", [message("user", "hi")])

    assert messages == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "hi"},
    ]


@pytest.mark.parametrize("instructions", [None, ""])
def test_missing_or_empty_instructions_add_no_message(instructions: str | None) -> None:
    assert to_chat_messages(instructions, [message("user", "hi")]) == [
        {"role": "user", "content": "hi"}
    ]


def test_no_instructions_and_no_items_give_no_messages() -> None:
    assert to_chat_messages(None, []) == []


# --- message items -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "chat_role"),
    [
        ("user", "user"),
        ("system", "system"),
        ("developer", "system"),
        ("assistant", "assistant"),
    ],
)
def test_message_roles_map_to_chat_roles(role: str, chat_role: str) -> None:
    assert to_chat_messages(None, [message(role, "text")]) == [
        {"role": chat_role, "content": "text"}
    ]


def test_developer_message_after_instructions_stays_a_separate_system_message() -> None:
    messages = to_chat_messages("top", [message("developer", "dev rules")])

    assert messages == [
        {"role": "system", "content": "top"},
        {"role": "system", "content": "dev rules"},
    ]


def test_text_parts_join_into_a_single_string_without_separator() -> None:
    content = [
        {"type": "input_text", "text": "Hello, "},
        {"type": "input_text", "text": "world"},
    ]

    assert to_chat_messages(None, [message("user", content)]) == [
        {"role": "user", "content": "Hello, world"}
    ]


def test_assistant_output_text_and_refusal_parts_become_a_string() -> None:
    content = [
        {"type": "output_text", "text": "I can help with that. ", "annotations": []},
        {"type": "refusal", "refusal": "But not with this."},
    ]

    assert to_chat_messages(None, [message("assistant", content)]) == [
        {"role": "assistant", "content": "I can help with that. But not with this."}
    ]


def test_empty_part_list_becomes_empty_string() -> None:
    assert to_chat_messages(None, [message("user", [])]) == [{"role": "user", "content": ""}]


def test_image_turns_content_into_chat_parts() -> None:
    content = [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "high"},
    ]

    assert to_chat_messages(None, [message("user", content)]) == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://example.com/cat.png", "detail": "high"},
                },
            ],
        }
    ]


@pytest.mark.parametrize("detail", ["auto", "low", "high"])
def test_image_detail_is_passed_through(detail: str) -> None:
    content = [{"type": "input_image", "image_url": "https://x/y.png", "detail": detail}]

    [chat_message] = to_chat_messages(None, [message("user", content)])

    assert chat_message["content"][0]["image_url"] == {"url": "https://x/y.png", "detail": detail}


@pytest.mark.parametrize(
    "part",
    [
        {"type": "input_image", "image_url": "https://x/y.png"},
        {"type": "input_image", "image_url": "https://x/y.png", "detail": None},
    ],
)
def test_image_without_detail_sends_no_detail(part: dict[str, Any]) -> None:
    [chat_message] = to_chat_messages(None, [message("user", [part])])

    assert chat_message["content"] == [
        {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
    ]


def test_image_data_url_passes_through_unchanged() -> None:
    content = [{"type": "input_image", "image_url": PNG_DATA_URL, "detail": "low"}]

    [chat_message] = to_chat_messages(None, [message("user", content)])

    assert chat_message["content"] == [
        {"type": "image_url", "image_url": {"url": PNG_DATA_URL, "detail": "low"}}
    ]


def test_refusal_part_becomes_text_part_when_content_has_an_image() -> None:
    content = [
        {"type": "refusal", "refusal": "no"},
        {"type": "input_image", "image_url": "https://x/y.png"},
    ]

    [chat_message] = to_chat_messages(None, [message("user", content)])

    assert chat_message["content"][0] == {"type": "text", "text": "no"}


def test_image_with_only_file_id_is_dropped() -> None:
    content = [
        {"type": "input_text", "text": "look"},
        {"type": "input_image", "file_id": "file_123"},
    ]

    [chat_message] = to_chat_messages(None, [message("user", content)])

    assert chat_message["content"] == [{"type": "text", "text": "look"}]


# --- function calls ----------------------------------------------------------------------


def test_function_call_becomes_assistant_tool_call() -> None:
    item = function_call("call_1", "get_weather", '{"city": "Paris"}')

    assert to_chat_messages(None, [item]) == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [tool_call("call_1", "get_weather", '{"city": "Paris"}')],
        }
    ]


def test_consecutive_function_calls_merge_into_one_assistant_message() -> None:
    items = [
        message("user", "weather in Paris and Rome?"),
        function_call("call_1", arguments='{"city": "Paris"}'),
        function_call("call_2", arguments='{"city": "Rome"}'),
        function_call_output("call_1", "sunny"),
        function_call_output("call_2", "rainy"),
    ]

    assert to_chat_messages(None, items) == [
        {"role": "user", "content": "weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                tool_call("call_1", arguments='{"city": "Paris"}'),
                tool_call("call_2", arguments='{"city": "Rome"}'),
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "rainy"},
    ]


def test_function_calls_attach_to_preceding_assistant_text_message() -> None:
    items = [
        message("user", "weather?"),
        message("assistant", [{"type": "output_text", "text": "Let me check."}]),
        function_call("call_1"),
        function_call("call_2"),
    ]

    assert to_chat_messages(None, items) == [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [tool_call("call_1"), tool_call("call_2")],
        },
    ]


def test_function_calls_after_user_message_start_a_new_assistant_message() -> None:
    messages = to_chat_messages(None, [message("user", "go"), function_call("call_1")])

    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["content"] is None


def test_function_calls_separated_by_tool_output_are_separate_turns() -> None:
    items = [
        function_call("call_1"),
        function_call_output("call_1", "a"),
        function_call("call_2"),
        function_call_output("call_2", "b"),
    ]

    messages = to_chat_messages(None, items)

    assert messages == [
        {"role": "assistant", "content": None, "tool_calls": [tool_call("call_1")]},
        {"role": "tool", "tool_call_id": "call_1", "content": "a"},
        {"role": "assistant", "content": None, "tool_calls": [tool_call("call_2")]},
        {"role": "tool", "tool_call_id": "call_2", "content": "b"},
    ]


def test_function_call_after_instructions_does_not_attach_to_system_message() -> None:
    messages = to_chat_messages("sys", [function_call("call_1")])

    assert messages == [
        {"role": "system", "content": "sys"},
        {"role": "assistant", "content": None, "tool_calls": [tool_call("call_1")]},
    ]


def test_merging_does_not_mutate_input_items() -> None:
    items = [
        message("assistant", "thinking"),
        function_call("call_1"),
        function_call("call_2"),
    ]
    before = copy.deepcopy(items)

    to_chat_messages("sys", items)

    assert items == before


# --- function call outputs ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "content"),
    [
        ("plain result", "plain result"),
        ("", ""),
        (
            [{"type": "input_text", "text": "part one, "}, {"type": "input_text", "text": "two"}],
            "part one, two",
        ),
        (
            [
                {"type": "input_text", "text": "see image"},
                {"type": "input_image", "image_url": "https://x/y.png"},
            ],
            "see image",
        ),
        ([], ""),
    ],
)
def test_function_call_output_becomes_tool_message(output: Any, content: str) -> None:
    assert to_chat_messages(None, [function_call_output("call_9", output)]) == [
        {"role": "tool", "tool_call_id": "call_9", "content": content}
    ]


# --- other item types --------------------------------------------------------------------


@pytest.mark.parametrize(
    "item",
    [
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "mcp_list_tools", "id": "mcpl_1", "server_label": "s", "tools": []},
        {"type": "item_reference", "id": "msg_1"},
    ],
)
def test_unsupported_item_types_are_skipped(item: dict[str, Any]) -> None:
    items = [message("user", "before"), item, message("user", "after")]

    assert to_chat_messages(None, items) == [
        {"role": "user", "content": "before"},
        {"role": "user", "content": "after"},
    ]


def test_full_conversation_round_trip() -> None:
    items = [
        message("developer", "Use tools."),
        message("user", [{"type": "input_text", "text": "Weather in Paris?"}]),
        {"type": "reasoning", "id": "rs_1", "summary": []},
        function_call("call_1", arguments='{"city":"Paris"}'),
        function_call_output("call_1", '{"temp": 21}'),
        message("assistant", [{"type": "output_text", "text": "21C", "annotations": []}]),
        message("user", "thanks"),
    ]

    assert to_chat_messages("You are Ferry.", items) == [
        {"role": "system", "content": "You are Ferry."},
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [tool_call("call_1", arguments='{"city":"Paris"}')],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
        {"role": "assistant", "content": "21C"},
        {"role": "user", "content": "thanks"},
    ]


# --- chat_completion_body: basics --------------------------------------------------------

MESSAGES = [{"role": "user", "content": "hi"}]

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": True,
}


def body_for(request: dict[str, Any], extra_tools: list[dict[str, Any]] | None = None) -> Any:
    return chat_completion_body({"model": "m", **request}, MESSAGES, extra_tools)


def test_minimal_body() -> None:
    assert chat_completion_body({"model": "qwen", "input": "hi"}, MESSAGES) == {
        "model": "qwen",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


@pytest.mark.parametrize(
    ("field", "value", "chat_field"),
    [
        ("temperature", 0.2, "temperature"),
        ("temperature", 0, "temperature"),
        ("top_p", 0.9, "top_p"),
        ("presence_penalty", 0.5, "presence_penalty"),
        ("frequency_penalty", -0.5, "frequency_penalty"),
        ("max_output_tokens", 256, "max_tokens"),
    ],
)
def test_sampling_fields_are_mapped(field: str, value: float, chat_field: str) -> None:
    body = body_for({field: value})

    assert body[chat_field] == value
    if chat_field != field:
        assert field not in body


@pytest.mark.parametrize(
    "field",
    ["temperature", "top_p", "presence_penalty", "frequency_penalty", "max_output_tokens"],
)
def test_none_sampling_fields_are_not_sent(field: str) -> None:
    body = body_for({field: None})

    assert field not in body
    assert "max_tokens" not in body


@pytest.mark.parametrize(
    "field", ["instructions", "store", "metadata", "previous_response_id", "reasoning"]
)
def test_responses_only_fields_are_not_forwarded(field: str) -> None:
    assert field not in body_for({field: "x"})


def test_reasoning_effort_is_forwarded_under_its_chat_name() -> None:
    body = body_for({"reasoning": {"effort": "low", "summary": "auto"}})

    assert body["reasoning_effort"] == "low"
    assert "reasoning" not in body


def test_no_reasoning_effort_is_sent_unless_asked_for() -> None:
    assert "reasoning_effort" not in body_for({"reasoning": {"summary": "auto"}})


LOGPROBS = ["message.output_text.logprobs"]


@pytest.mark.parametrize(
    ("request_fields", "chat_fields"),
    [
        ({"include": LOGPROBS, "top_logprobs": 5}, {"logprobs": True, "top_logprobs": 5}),
        ({"include": LOGPROBS, "top_logprobs": 0}, {"logprobs": True, "top_logprobs": 0}),
        ({"include": LOGPROBS}, {"logprobs": True}),
        # Without the include value OpenAI shows no logprobs: none are asked of the upstream,
        # and a lone `top_logprobs` would be refused by it.
        ({"top_logprobs": 5}, {}),
        ({"include": ["reasoning.encrypted_content"], "top_logprobs": 5}, {}),
    ],
)
def test_logprobs_are_asked_for_only_when_include_wants_them(
    request_fields: dict[str, Any], chat_fields: dict[str, Any]
) -> None:
    body = body_for(request_fields)

    assert {k: body[k] for k in ("logprobs", "top_logprobs") if k in body} == chat_fields
    assert "include" not in body


# --- tools -------------------------------------------------------------------------------


def test_function_tool_is_nested_under_function() -> None:
    body = body_for({"tools": [WEATHER_TOOL]})

    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather",
                "parameters": WEATHER_TOOL["parameters"],
                "strict": True,
            },
        }
    ]


def test_function_tool_omits_absent_and_none_keys() -> None:
    tool = {"type": "function", "name": "ping", "description": None, "strict": None}

    body = body_for({"tools": [tool]})

    assert body["tools"] == [{"type": "function", "function": {"name": "ping"}}]


def test_non_function_tools_are_skipped() -> None:
    tools = [
        {"type": "web_search_preview"},
        {"type": "mcp", "server_label": "s", "server_url": "https://mcp"},
        WEATHER_TOOL,
    ]

    body = body_for({"tools": tools})

    assert [tool["function"]["name"] for tool in body["tools"]] == ["get_weather"]


def test_extra_tools_are_appended_after_request_tools() -> None:
    extra = [{"type": "function", "name": "mcp_search", "parameters": {"type": "object"}}]

    body = body_for({"tools": [WEATHER_TOOL]}, extra_tools=extra)

    assert [tool["function"]["name"] for tool in body["tools"]] == ["get_weather", "mcp_search"]
    assert body["tools"][1] == {
        "type": "function",
        "function": {"name": "mcp_search", "parameters": {"type": "object"}},
    }


def test_extra_tools_alone_are_sent() -> None:
    extra = [{"type": "function", "name": "mcp_search"}]

    body = body_for({"tool_choice": "required"}, extra_tools=extra)

    assert body["tools"] == [{"type": "function", "function": {"name": "mcp_search"}}]
    assert body["tool_choice"] == "required"


@pytest.mark.parametrize("choice", ["none", "auto", "required"])
def test_string_tool_choice_passes_through(choice: str) -> None:
    assert body_for({"tools": [WEATHER_TOOL], "tool_choice": choice})["tool_choice"] == choice


def test_function_tool_choice_is_nested() -> None:
    body = body_for(
        {"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "name": "get_weather"}}
    )

    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


@pytest.mark.parametrize(
    "choice",
    [
        None,
        {"type": "web_search_preview"},
        {"type": "allowed_tools", "mode": "auto", "tools": []},
        "sometimes",
    ],
)
def test_unmappable_tool_choice_is_not_sent(choice: Any) -> None:
    body = body_for({"tools": [WEATHER_TOOL], "tool_choice": choice})

    assert "tool_choice" not in body
    assert "tools" in body


@pytest.mark.parametrize("parallel", [True, False])
def test_parallel_tool_calls_sent_with_tools(parallel: bool) -> None:
    body = body_for({"tools": [WEATHER_TOOL], "parallel_tool_calls": parallel})

    assert body["parallel_tool_calls"] is parallel


def test_parallel_tool_calls_none_is_not_sent() -> None:
    assert "parallel_tool_calls" not in body_for(
        {"tools": [WEATHER_TOOL], "parallel_tool_calls": None}
    )


@pytest.mark.parametrize(
    "tools",
    [None, [], [{"type": "web_search_preview"}], [{"type": "file_search", "vector_store_ids": []}]],
)
def test_no_tools_means_no_tool_choice_or_parallel_tool_calls(tools: Any) -> None:
    body = body_for(
        {
            "tools": tools,
            "tool_choice": {"type": "function", "name": "get_weather"},
            "parallel_tool_calls": True,
        }
    )

    assert "tools" not in body
    assert "tool_choice" not in body
    assert "parallel_tool_calls" not in body


# --- text.format -------------------------------------------------------------------------


@pytest.mark.parametrize("text", [None, {}, {"format": None}, {"format": {"type": "text"}}])
def test_plain_text_format_sends_no_response_format(text: Any) -> None:
    assert "response_format" not in body_for({"text": text})


def test_json_object_format() -> None:
    body = body_for({"text": {"format": {"type": "json_object"}}})

    assert body["response_format"] == {"type": "json_object"}


def test_json_schema_format_is_nested_under_json_schema() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    text_format = {
        "type": "json_schema",
        "name": "answer",
        "schema": schema,
        "strict": True,
        "description": "The answer",
    }

    body = body_for({"text": {"format": text_format, "verbosity": "low"}})

    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "schema": schema,
            "strict": True,
            "description": "The answer",
        },
    }


def test_json_schema_format_omits_absent_optional_keys() -> None:
    text_format = {"type": "json_schema", "name": "answer", "schema": {}, "strict": None}

    body = body_for({"text": {"format": text_format}})

    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": {}},
    }


# --- user --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_fields", "user"),
    [
        ({"user": "u-1"}, "u-1"),
        ({"safety_identifier": "s-1"}, "s-1"),
        ({"safety_identifier": "s-1", "user": "u-1"}, "s-1"),
        ({"safety_identifier": None, "user": "u-1"}, "u-1"),
    ],
)
def test_user_comes_from_safety_identifier_or_user(
    request_fields: dict[str, Any], user: str
) -> None:
    body = body_for(request_fields)

    assert body["user"] == user
    assert "safety_identifier" not in body


def test_no_user_fields_sends_no_user() -> None:
    assert "user" not in body_for({"user": None, "safety_identifier": None})


def test_body_does_not_mutate_request() -> None:
    request = {
        "model": "m",
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "text": {"format": {"type": "json_schema", "name": "a", "schema": {}}},
        "max_output_tokens": 5,
    }
    before = copy.deepcopy(request)

    chat_completion_body(request, MESSAGES, [{"type": "function", "name": "x"}])

    assert request == before


def test_mcp_call_becomes_a_call_and_its_result() -> None:
    done = {
        "type": "mcp_call",
        "id": "mcp_1",
        "server_label": "s",
        "name": "add",
        "arguments": '{"a": 1}',
        "output": "2",
        "error": None,
    }
    failed = {
        **done,
        "id": "mcp_2",
        "output": None,
        "error": {
            "type": "mcp_tool_execution_error",
            "content": [{"type": "text", "text": "boom"}],
        },
    }
    assert to_chat_messages(None, [done, failed]) == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [tool_call("mcp_1", "add", '{"a": 1}')],
        },
        {"role": "tool", "tool_call_id": "mcp_1", "content": "2"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [tool_call("mcp_2", "add", '{"a": 1}')],
        },
        {"role": "tool", "tool_call_id": "mcp_2", "content": '{"error": "boom"}'},
    ]


def approval_request(request_id: str, name: str = "add") -> dict[str, Any]:
    return {
        "type": "mcp_approval_request",
        "id": request_id,
        "server_label": "s",
        "name": name,
        "arguments": "{}",
    }


def test_an_approval_is_answered_right_after_its_call_by_the_call_it_let_run() -> None:
    items = [
        message("user", "Add and look"),
        approval_request("mcpr_1"),
        function_call("call_2"),
        # The client answers the two in the next response, after a word of its own.
        function_call_output("call_2", "sunny"),
        message("user", "Yes, go on"),
        {"type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": True},
        {
            "type": "mcp_call",
            "id": "mcp_9",
            "server_label": "s",
            "name": "add",
            "arguments": "{}",
            "output": "3",
            "error": None,
            "approval_request_id": "mcpr_1",
        },
    ]
    assert to_chat_messages(None, items) == [
        {"role": "user", "content": "Add and look"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [tool_call("mcpr_1", "add"), tool_call("call_2")],
        },
        {"role": "tool", "tool_call_id": "call_2", "content": "sunny"},
        {"role": "tool", "tool_call_id": "mcpr_1", "content": "3"},
        {"role": "user", "content": "Yes, go on"},
    ]


def test_a_denied_or_unanswered_approval_request_is_a_call_that_did_not_run() -> None:
    denied = {
        "type": "mcp_approval_response",
        "approval_request_id": "mcpr_1",
        "approve": False,
        "reason": "too risky",
    }
    messages = to_chat_messages(
        None, [approval_request("mcpr_1"), approval_request("mcpr_2", "fail"), denied]
    )

    call, first, second = messages
    assert call["tool_calls"] == [tool_call("mcpr_1", "add"), tool_call("mcpr_2", "fail")]
    assert first == {
        "role": "tool",
        "tool_call_id": "mcpr_1",
        "content": '{"error": "The call was not approved, so it did not run. Reason given: '
        'too risky"}',
    }
    assert second == {
        "role": "tool",
        "tool_call_id": "mcpr_2",
        "content": '{"error": "The call did not run: it was not approved."}',
    }
