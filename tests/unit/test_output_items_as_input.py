"""The items Ferry outputs, sent back as input: each normalised to the shape Ferry shows it,
and each malformed field a 400 naming it."""

from __future__ import annotations

from typing import Any

import pytest

from app.engine.errors import RequestError
from app.engine.request import parse_create_request

Json = dict[str, Any]


def normalised(*items: Json) -> list[Json]:
    _, parsed = parse_create_request({"model": "m", "input": list(items)})
    return parsed


def rejection(item: Json) -> RequestError:
    with pytest.raises(RequestError) as info:
        normalised({"role": "user", "content": "hi"}, item)
    return info.value


def test_a_reasoning_item_keeps_what_ferry_shows_and_drops_the_rest() -> None:
    [item] = normalised(
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [{"type": "summary_text", "text": "S"}],
            "content": [{"type": "reasoning_text", "text": "T"}],
            "encrypted_content": "gAAAAAblob",
            "status": "incomplete",
            "something_else": True,
        }
    )
    assert item == {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [{"type": "summary_text", "text": "S"}],
        "content": [{"type": "reasoning_text", "text": "T"}],
        "encrypted_content": "gAAAAAblob",
        "status": "incomplete",
    }


def test_a_reasoning_item_without_an_id_gets_one_unless_its_blob_brings_one() -> None:
    plain, sealed = normalised(
        {"type": "reasoning", "summary": [], "content": None, "encrypted_content": None},
        {"type": "reasoning", "summary": [], "encrypted_content": "gAAAAAblob"},
    )
    assert plain["id"].startswith("rs_")
    assert plain == {"type": "reasoning", "id": plain["id"], "summary": [], "status": "completed"}
    assert sealed["id"] is None  # the id sealed in the blob, once it is opened
    assert sealed["encrypted_content"] == "gAAAAAblob"


def test_mcp_items_keep_ferrys_shape() -> None:
    listing, call, older = normalised(
        {
            "type": "mcp_list_tools",
            "id": "mcpl_1",
            "server_label": "s",
            "tools": [{"name": "t", "input_schema": {"type": "object"}}],
        },
        {
            "type": "mcp_call",
            "id": "mcp_1",
            "server_label": "s",
            "name": "t",
            "arguments": "{}",
            "approval_request_id": "mcpr_1",
        },
        {
            "type": "mcp_call",
            "id": "mcp_2",
            "server_label": "s",
            "name": "t",
            "arguments": "{}",
            "error": "an error as older outputs gave it",
            "status": "failed",
        },
    )
    assert listing == {
        "type": "mcp_list_tools",
        "id": "mcpl_1",
        "server_label": "s",
        "tools": [
            {
                "name": "t",
                "description": None,
                "input_schema": {"type": "object"},
                "annotations": None,
            }
        ],
        "error": None,
    }
    assert call == {
        "type": "mcp_call",
        "id": "mcp_1",
        "status": "completed",
        "server_label": "s",
        "name": "t",
        "arguments": "{}",
        "output": None,
        "error": None,
        "approval_request_id": "mcpr_1",
    }
    assert (older["status"], older["error"]) == ("failed", "an error as older outputs gave it")


def test_approval_items_keep_openais_shape() -> None:
    request = {
        "type": "mcp_approval_request",
        "id": "mcpr_1",
        "server_label": "s",
        "name": "t",
        "arguments": "{}",
    }
    given, cut, approval, denial = normalised(
        {**request, "status": "completed"},
        {**request, "id": "mcpr_2", "status": "incomplete"},
        {"type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": True},
        {
            "type": "mcp_approval_response",
            "id": "mcpa_mine",
            "approval_request_id": "mcpr_2",
            "approve": False,
            "reason": "no",
        },
    )
    assert given == request  # complete: no status, as OpenAI shows it
    assert cut == {**request, "id": "mcpr_2", "status": "incomplete"}
    assert approval["id"].startswith("mcpa_")
    assert approval == {
        "type": "mcp_approval_response",
        "id": approval["id"],
        "approval_request_id": "mcpr_1",
        "approve": True,
        "reason": None,
    }
    assert (denial["id"], denial["approve"], denial["reason"]) == ("mcpa_mine", False, "no")


@pytest.mark.parametrize(
    "reference",
    [
        {"type": "item_reference", "id": "msg_1"},
        {"id": "msg_1"},
        {"type": None, "id": "msg_1"},
    ],
)
def test_an_item_reference_may_leave_its_type_out(reference: Json) -> None:
    assert normalised(reference) == [{"type": "item_reference", "id": "msg_1"}]


@pytest.mark.parametrize(
    ("item", "param", "code"),
    [
        ({"type": "reasoning", "summary": "S"}, "input[1].summary", "invalid_type"),
        ({"type": "reasoning", "summary": ["S"]}, "input[1].summary[0]", "invalid_type"),
        ({"type": "reasoning", "id": 5, "summary": []}, "input[1].id", "invalid_type"),
        (
            {"type": "reasoning", "summary": [], "content": [{"type": "output_text", "text": "x"}]},
            "input[1].content[0].type",
            "invalid_value",
        ),
        (
            {"type": "mcp_list_tools", "id": "l", "server_label": "s"},
            "input[1].tools",
            "missing_required_parameter",
        ),
        (
            {
                "type": "mcp_list_tools",
                "id": "l",
                "server_label": "s",
                "tools": [{"name": "t", "input_schema": "x"}],
            },
            "input[1].tools[0].input_schema",
            "invalid_type",
        ),
        (
            {"type": "mcp_call", "id": "m", "server_label": "s", "name": "t", "arguments": {}},
            "input[1].arguments",
            "invalid_type",
        ),
        (
            {
                "type": "mcp_call",
                "id": "m",
                "server_label": "s",
                "name": "t",
                "arguments": "{}",
                "status": "odd",
            },
            "input[1].status",
            "invalid_value",
        ),
        (
            {"type": "mcp_approval_request", "id": "r", "server_label": "s", "name": "t"},
            "input[1].arguments",
            "missing_required_parameter",
        ),
        (
            {"type": "mcp_approval_response", "approval_request_id": "mcpr_1"},
            "input[1].approve",
            "missing_required_parameter",
        ),
        (
            {"type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": "yes"},
            "input[1].approve",
            "invalid_type",
        ),
        (
            {"type": "mcp_approval_response", "approve": True},
            "input[1].approval_request_id",
            "missing_required_parameter",
        ),
        ({"type": "item_reference", "id": 7}, "input[1].id", "invalid_type"),
        ({"type": "web_search_call", "id": "ws_1"}, "input[1].type", "invalid_value"),
    ],
)
def test_a_malformed_field_is_named(item: Json, param: str, code: str) -> None:
    error = rejection(item)
    assert (error.param, error.code) == (param, code)
