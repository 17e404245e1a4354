"""GET /v1/responses/{id}/input_items: the stored input items, each with an id, paginated."""

from __future__ import annotations

import httpx
import openai
import pytest

MESSAGES = [{"role": "user", "content": f"message {i}"} for i in range(5)]


@pytest.fixture(scope="module")
def response_id(client: openai.OpenAI) -> str:
    return client.responses.create(model="demo", input=MESSAGES).id  # type: ignore[arg-type]


def texts(items: list[object]) -> list[str]:
    return [item.content[0].text for item in items]  # type: ignore[attr-defined]


def test_default_page_is_newest_first(client: openai.OpenAI, response_id: str) -> None:
    page = client.responses.input_items.list(response_id)
    assert texts(page.data) == [f"message {i}" for i in reversed(range(5))]
    assert all(item.id for item in page.data)  # type: ignore[union-attr]
    assert page.first_id == page.data[0].id  # type: ignore[union-attr]
    assert page.last_id == page.data[-1].id  # type: ignore[union-attr]
    assert page.has_more is False


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_paging_with_after_walks_every_item_once(
    client: openai.OpenAI, response_id: str, order: str
) -> None:
    first = client.responses.input_items.list(response_id, order=order, limit=2)  # type: ignore[arg-type]
    assert len(first.data) == 2
    assert first.has_more is True
    walked = list(client.responses.input_items.list(response_id, order=order, limit=2))  # type: ignore[arg-type]
    expected = [f"message {i}" for i in range(5)]
    assert texts(walked) == (expected if order == "asc" else expected[::-1])


def test_string_input_is_one_user_message(client: openai.OpenAI) -> None:
    response = client.responses.create(model="demo", input="just text")
    [item] = client.responses.input_items.list(response.id).data
    assert item.type == "message"
    assert item.role == "user"  # type: ignore[union-attr]
    assert texts([item]) == ["just text"]


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"order": "sideways"}, "order"),
        ({"after": "msg_unknown"}, "after"),
    ],
)
def test_bad_parameters_are_400(
    api_url: str, response_id: str, params: dict[str, str], param: str
) -> None:
    reply = httpx.get(f"{api_url}/v1/responses/{response_id}/input_items", params=params)
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == param
    assert reply.json()["error"]["type"] == "invalid_request_error"


def test_unknown_response_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.responses.input_items.list("resp_missing")
