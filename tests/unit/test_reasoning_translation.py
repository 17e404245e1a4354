"""Reasoning items in the chat `messages`: the `reasoning_content` of the assistant message
of their turn."""

from __future__ import annotations

from typing import Any

from app.engine.chat.messages import to_chat_messages

Json = dict[str, Any]


def thought(*texts: str, summary: str = "a summary") -> Json:
    return {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [{"type": "summary_text", "text": summary}],
        "content": [{"type": "reasoning_text", "text": text} for text in texts],
        "status": "completed",
    }


def user(text: str) -> Json:
    return {"type": "message", "role": "user", "content": text}


def said(text: str) -> Json:
    return {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text}],
    }


def call(call_id: str) -> Json:
    return {"type": "function_call", "call_id": call_id, "name": "f", "arguments": "{}"}


def output(call_id: str) -> Json:
    return {"type": "function_call_output", "call_id": call_id, "output": "done"}


def chat_call(call_id: str) -> Json:
    return {"id": call_id, "type": "function", "function": {"name": "f", "arguments": "{}"}}


def test_reasoning_rides_on_the_text_of_its_turn() -> None:
    assert to_chat_messages(None, [user("hi"), thought("Greet back."), said("Hello!")]) == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello!", "reasoning_content": "Greet back."},
    ]


def test_reasoning_rides_on_the_calls_of_its_turn_and_the_text_before_them() -> None:
    items = [user("go"), thought("Two calls."), said("Calling."), call("c1"), call("c2")]
    assert to_chat_messages(None, items)[1:] == [
        {
            "role": "assistant",
            "content": "Calling.",
            "reasoning_content": "Two calls.",
            "tool_calls": [chat_call("c1"), chat_call("c2")],
        }
    ]


def test_a_turn_of_calls_only_has_no_content() -> None:
    assert to_chat_messages(None, [thought("Just call."), call("c1")]) == [
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "Just call.",
            "tool_calls": [chat_call("c1")],
        }
    ]


def test_each_turn_of_a_tool_loop_keeps_its_own_reasoning() -> None:
    items = [
        user("go"),
        thought("First."),
        call("c1"),
        output("c1"),
        thought("Second."),
        said("Ok"),
    ]
    assert to_chat_messages(None, items)[1:] == [
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "First.",
            "tool_calls": [chat_call("c1")],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "done"},
        {"role": "assistant", "content": "Ok", "reasoning_content": "Second."},
    ]


def test_reasoning_after_an_answer_opens_a_new_turn() -> None:
    # The answer's turn is over: the calls after the new reasoning belong to the next one.
    items = [said("Earlier."), thought("Now call."), call("c1")]
    assert to_chat_messages(None, items) == [
        {"role": "assistant", "content": "Earlier."},
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "Now call.",
            "tool_calls": [chat_call("c1")],
        },
    ]


def test_reasoning_with_nothing_after_it_is_an_empty_assistant_message() -> None:
    assert to_chat_messages("sys", [user("q"), thought("Hmm."), user("well?")]) == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "", "reasoning_content": "Hmm."},
        {"role": "user", "content": "well?"},
    ]
    assert to_chat_messages(None, [thought("Last.")]) == [
        {"role": "assistant", "content": "", "reasoning_content": "Last."}
    ]


def test_reasoning_items_in_a_row_join_in_order() -> None:
    items = [thought("One", " part."), thought("Two."), said("Done.")]
    assert to_chat_messages(None, items) == [
        {"role": "assistant", "content": "Done.", "reasoning_content": "One part.\n\nTwo."}
    ]


def test_a_summary_alone_carries_nothing() -> None:
    assert to_chat_messages(None, [thought(summary="Only a summary."), said("Hi.")]) == [
        {"role": "assistant", "content": "Hi."}
    ]


def test_reasoning_joins_an_mcp_call_of_its_turn() -> None:
    mcp = {
        "type": "mcp_call",
        "id": "mcp_1",
        "server_label": "s",
        "name": "lookup",
        "arguments": "{}",
        "output": "found",
        "error": None,
    }
    assert to_chat_messages(None, [thought("Look it up."), mcp]) == [
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "Look it up.",
            "tool_calls": [
                {
                    "id": "mcp_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "mcp_1", "content": "found"},
    ]


def test_without_send_reasoning_reasoning_items_are_left_out() -> None:
    items = [user("q"), thought("Hidden."), said("A."), thought("Lone."), user("more")]
    assert to_chat_messages(None, items, send_reasoning=False) == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "A."},
        {"role": "user", "content": "more"},
    ]


def test_mcp_list_tools_has_no_chat_message() -> None:
    listing = {"type": "mcp_list_tools", "id": "l", "server_label": "s", "tools": [], "error": None}
    assert to_chat_messages(None, [user("q"), listing]) == [{"role": "user", "content": "q"}]


def test_the_items_are_not_changed() -> None:
    items = [thought("Keep me."), said("As is."), call("c1")]
    before = repr(items)
    to_chat_messages(None, items)
    assert repr(items) == before
