"""Files in user messages, through the SDK and raw HTTP against real Postgres and uvicorn:
text and PDF files given as file_data or fetched from a file_url, read into text once and
kept on the stored part; every refusal a 400 naming the part. And `phase` kept on stored
assistant messages."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.config import Settings
from tests.fakes.upstream.spy import requests_mentioning
from tests.support.clients import sdk_client
from tests.support.pdfs import text_pdf
from tests.support.servers import running_api, serve
from tests.support.sockets import create, raw_socket, read_turn

FILES = {
    "notes.md": (b"# Notes\n\nShip on Tuesday.", "text/markdown"),
    "report": (text_pdf("Revenue grew", "Costs fell"), "application/octet-stream"),
}


def data_url(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def asking(marker: str, *parts: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "role": "user",
            "content": [{"type": "input_text", "text": f"{marker} read this:"}, *parts],
        }
    ]


def sent_upstream(upstream_url: str, marker: str) -> Any:
    [request] = requests_mentioning(upstream_url, marker)
    return request["body"]["messages"][-1]["content"]


@pytest.fixture(scope="module")
def file_server() -> Iterator[str]:
    async def handle(request: Request) -> Response:
        found = FILES.get(request.path_params["name"])
        if found is None:
            return Response(status_code=404)
        return Response(found[0], media_type=found[1])

    app = Starlette(routes=[Route("/files/{name}", handle)])
    with serve(app, ready_path="/files/notes.md", lifespan="off") as url:
        yield f"{url}/files/"


@pytest.fixture(scope="module")
def files_api(make_settings: Callable[..., Settings], file_server: str) -> Iterator[str]:
    settings = make_settings(input_file_urls=file_server, input_file_max_bytes=4096)
    with running_api(settings) as url:
        yield url


def test_text_and_pdf_files_reach_the_model_as_text(
    client: openai.OpenAI, upstream_url: str
) -> None:
    marker = f"files-{secrets.token_hex(3)}"
    text_part = {
        "type": "input_file",
        "filename": "data.csv",
        "file_data": data_url("text/csv", b"city,temp\nOslo,21\n"),
    }
    pdf_part = {
        "type": "input_file",
        "filename": "report.pdf",
        "file_data": base64.b64encode(text_pdf("Page one", "Page two")).decode(),
    }
    response = client.responses.create(
        model="demo",
        input=asking(marker, text_part, pdf_part),  # type: ignore[arg-type]
    )
    assert response.status == "completed"
    assert sent_upstream(upstream_url, marker) == (
        f"{marker} read this:"
        '\n<file name="data.csv">\ncity,temp\nOslo,21\n\n</file>\n'
        '\n<file name="report.pdf">\nPage one\n\nPage two\n</file>\n'
    )
    # Stored as sent, with the text the model was given: read once, never again.
    [item] = client.responses.input_items.list(response.id).data
    raw = item.to_dict()
    assert raw["content"][1] == {**text_part, "text": "city,temp\nOslo,21\n"}
    assert raw["content"][2] == {**pdf_part, "text": "Page one\n\nPage two"}
    later = client.responses.create(
        model="demo", input=f"{marker} and then?", previous_response_id=response.id
    )
    messages = requests_mentioning(upstream_url, f"{marker} and then?")[0]["body"]["messages"]
    assert "Page two" in messages[0]["content"]
    assert later.status == "completed"


def test_files_are_fetched_from_allowed_urls(
    files_api: str, file_server: str, upstream_url: str
) -> None:
    marker = f"urls-{secrets.token_hex(3)}"
    parts = [
        {"type": "input_file", "file_url": f"{file_server}notes.md"},
        {"type": "input_file", "file_url": f"{file_server}report", "filename": "q3.pdf"},
    ]
    with sdk_client(files_api) as client:
        response = client.responses.create(model="demo", input=asking(marker, *parts))  # type: ignore[arg-type]
    assert response.status == "completed"
    content = sent_upstream(upstream_url, marker)
    assert f'<file name="{file_server}notes.md">\n# Notes\n\nShip on Tuesday.\n</file>' in content
    assert '<file name="q3.pdf">\nRevenue grew\n\nCosts fell\n</file>' in content


@pytest.mark.parametrize(
    ("part", "param", "code"),
    [
        (
            {"type": "input_file", "filename": "a.png", "file_data": data_url("image/png", b"x")},
            "input[0].content[1]",
            "unsupported_file",
        ),
        (
            {
                "type": "input_file",
                "filename": "big.txt",
                "file_data": data_url("text/plain", b"x" * 5000),
            },
            "input[0].content[1]",
            "file_too_large",
        ),
        (
            {"type": "input_file", "filename": "a.txt", "file_data": "%%%"},
            "input[0].content[1].file_data",
            "invalid_value",
        ),
        (
            {"type": "input_file", "file_url": "http://169.254.169.254/latest/meta-data"},
            "input[0].content[1].file_url",
            "unsupported_value",
        ),
        (
            {"type": "input_file", "file_url": "FILE_SERVER/missing.txt"},
            "input[0].content[1].file_url",
            "invalid_value",
        ),
        (
            {"type": "input_file", "file_id": "file-1"},
            "input[0].content[1].file_id",
            "unsupported_value",
        ),
    ],
)
def test_a_file_that_cannot_be_given_is_a_400_naming_it(
    files_api: str,
    file_server: str,
    part: dict[str, Any],
    param: str,
    code: str,
) -> None:
    if "file_url" in part:
        part = {**part, "file_url": part["file_url"].replace("FILE_SERVER/", file_server)}
    body = {"model": "demo", "input": asking("refused", part)}
    reply = httpx.post(f"{files_api}/v1/responses", json=body, timeout=30)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")


def test_files_work_over_the_socket_too(api_url: str, upstream_url: str) -> None:
    marker = f"socket-file-{secrets.token_hex(3)}"
    part = {
        "type": "input_file",
        "filename": "n.json",
        "file_data": data_url("application/json", b'{"n": 1}'),
    }
    with raw_socket(api_url) as socket:
        socket.send(create(input=asking(marker, part), store=False))
        assert read_turn(socket)[-1]["type"] == "response.completed"
        socket.send(
            create(input=asking(marker, {**part, "filename": "n.exe", "file_data": "TVo="}))
        )
        [refused] = read_turn(socket)
    assert '<file name="n.json">\n{"n": 1}\n</file>' in sent_upstream(upstream_url, marker)
    assert (refused["status"], refused["error"]["code"]) == (400, "unsupported_file")


def test_assistant_phases_are_kept_on_the_stored_input(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="demo",
        input=[
            {"role": "assistant", "phase": "commentary", "content": "I should check."},
            {"role": "assistant", "phase": "final_answer", "content": "It is four."},
            {"role": "user", "content": "Repeat the number."},
        ],
    )
    items = client.responses.input_items.list(response.id, order="asc").data
    assert [getattr(item, "phase", None) for item in items] == ["commentary", "final_answer", None]
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(
            model="demo",
            input=[{"role": "assistant", "phase": "musing", "content": "Hm."}],  # type: ignore[typeddict-item]
        )
    assert refused.value.body["param"] == "input[0].phase"  # type: ignore[index]
