"""`input_file` parts: accepted in user messages, their files read into text once (text
types as they are, PDFs page by page), every refusal a 400 naming the part; and how the
model is given the text. Also `phase` on messages, kept as sent."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from app.engine.chat.messages import to_chat_messages
from app.engine.errors import RequestError
from app.engine.input_files import FileLimits, FileReader, file_text
from app.engine.request import parse_create_request
from tests.support.pdfs import text_pdf

LIMITS = FileLimits(max_bytes=10_000, url_prefixes=("https://files.test/",), fetch_timeout_s=5)


def data_url(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def user_message(*parts: dict[str, Any], role: str = "user") -> dict[str, Any]:
    return {"model": "m", "input": [{"type": "message", "role": role, "content": list(parts)}]}


def files_server(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/notes.md":
        return httpx.Response(200, content=b"# Notes\n", headers={"content-type": "text/markdown"})
    if request.url.path == "/report":
        return httpx.Response(
            200,
            content=text_pdf("Quarterly"),
            headers={"content-type": "application/octet-stream"},
        )
    if request.url.path == "/big.txt":
        return httpx.Response(200, content=b"x" * 20_000)
    if request.url.path == "/moved.txt":
        return httpx.Response(302, headers={"location": "https://elsewhere.test/x.txt"})
    return httpx.Response(404)


def reader() -> FileReader:
    return FileReader(LIMITS, transport=httpx.MockTransport(files_server))


# --- accepted at the door ------------------------------------------------------------------


def test_a_user_message_takes_input_file_parts_as_sent() -> None:
    part = {"type": "input_file", "filename": "a.txt", "file_data": "aGk=", "text": "forged"}
    _, [item] = parse_create_request(user_message({"type": "input_text", "text": "See:"}, part))
    # Only what a client may say: the text is Ferry's to read from the file.
    assert item["content"][1] == {"type": "input_file", "filename": "a.txt", "file_data": "aGk="}
    url = {"type": "input_file", "file_url": "https://files.test/a.md"}
    _, [item] = parse_create_request(user_message(url))
    assert item["content"] == [url]


@pytest.mark.parametrize(
    ("request_body", "param", "code"),
    [
        (
            user_message({"type": "input_file", "file_data": "aGk="}, role="assistant"),
            "input[0].content[0]",
            "invalid_value",
        ),
        (
            user_message({"type": "input_file", "file_data": "aGk="}, role="system"),
            "input[0].content[0]",
            "invalid_value",
        ),
        (
            {
                "model": "m",
                "input": [
                    {
                        "type": "function_call_output",
                        "call_id": "c",
                        "output": [{"type": "input_file", "file_data": "aGk="}],
                    }
                ],
            },
            "input[0].output[0]",
            "invalid_value",
        ),
        (
            user_message({"type": "input_file", "file_id": "file-abc"}),
            "input[0].content[0].file_id",
            "unsupported_value",
        ),
        (
            user_message({"type": "input_file", "filename": "a.txt"}),
            "input[0].content[0].file_data",
            "missing_required_parameter",
        ),
        (
            user_message({"type": "input_file", "file_data": "aGk=", "file_url": "https://x"}),
            "input[0].content[0].file_data",
            "invalid_value",
        ),
        (
            user_message({"type": "input_file", "file_data": 5}),
            "input[0].content[0].file_data",
            "invalid_type",
        ),
    ],
)
def test_a_misplaced_or_malformed_file_part_is_a_400_naming_it(
    request_body: dict[str, Any], param: str, code: str
) -> None:
    with pytest.raises(RequestError) as refused:
        parse_create_request(request_body)
    assert (refused.value.param, refused.value.code) == (param, code)


def test_an_assistant_message_keeps_its_phase() -> None:
    body = {
        "model": "m",
        "input": [
            {"role": "assistant", "phase": "commentary", "content": "Checking."},
            {"type": "message", "role": "assistant", "phase": "final_answer", "content": "4."},
            {"role": "assistant", "phase": None, "content": "no phase"},
        ],
    }
    _, items = parse_create_request(body)
    assert [item.get("phase") for item in items] == ["commentary", "final_answer", None]
    assert "phase" not in items[2]
    with pytest.raises(RequestError) as refused:
        parse_create_request(
            {"model": "m", "input": [{"role": "assistant", "phase": "x", "content": "y"}]}
        )
    assert (refused.value.param, refused.value.code) == ("input[0].phase", "invalid_value")


# --- read into text ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("media_type", "data", "text"),
    [
        ("text/plain", "\ufeffplain text".encode(), "plain text"),  # the BOM goes
        ("text/markdown", b"# Title\n\nbody", "# Title\n\nbody"),
        ("application/json", b'{"a": [1, 2]}', '{"a": [1, 2]}'),
        ("text/csv", b"a,b\n1,2\n", "a,b\n1,2\n"),
        ("application/pdf", text_pdf("First page", "Second (page)"), "First page\n\nSecond (page)"),
        (None, text_pdf("Sniffed"), "Sniffed"),  # nothing said: the bytes tell
        (None, "ünïcode".encode(), "ünïcode"),
    ],
)
async def test_readable_files_become_text(media_type: str | None, data: bytes, text: str) -> None:
    assert await file_text(data, media_type, "'f'", "input[0].content[0]") == text


@pytest.mark.parametrize(
    ("media_type", "data", "code", "says"),
    [
        ("image/png", b"\x89PNG", "unsupported_file", "Unsupported file type 'image/png'"),
        ("application/zip", b"PK", "unsupported_file", "reads plain text, Markdown"),
        ("text/plain", b"\xff\xfe\x00", "invalid_value", "is not UTF-8 text"),
        ("text/plain", b"a\x00b", "invalid_value", "holds NUL characters"),
        ("application/pdf", b"%PDF-1.4 not really", "invalid_value", "could not be read"),
        ("application/pdf", text_pdf(), "invalid_value", "has no text to read"),
    ],
)
async def test_unreadable_files_are_a_400_naming_the_part(
    media_type: str, data: bytes, code: str, says: str
) -> None:
    with pytest.raises(RequestError) as refused:
        await file_text(data, media_type, "'f'", "input[0].content[1]")
    assert (refused.value.param, refused.value.code) == ("input[0].content[1]", code)
    assert says in refused.value.message


async def test_file_data_is_base64_or_a_data_url_typed_by_it_or_by_the_name() -> None:
    where = "input[0].content[0]"
    typed = {"type": "input_file", "file_data": data_url("text/csv", b"a,b")}
    assert (await reader().read(typed, where))["text"] == "a,b"
    named = {"type": "input_file", "filename": "r.pdf", "file_data": "JVBER" + "i0x"}
    with pytest.raises(RequestError, match="could not be read as a PDF"):
        await reader().read(named, where)
    pdf = base64.b64encode(text_pdf("Named")).decode()
    read = await reader().read({"type": "input_file", "filename": "r.pdf", "file_data": pdf}, where)
    assert read == {"type": "input_file", "filename": "r.pdf", "file_data": pdf, "text": "Named"}
    image = {"type": "input_file", "filename": "photo.png", "file_data": "iVBORw0K"}
    with pytest.raises(RequestError) as refused:
        await reader().read(image, where)
    assert refused.value.code == "unsupported_file"


@pytest.mark.parametrize(
    ("file_data", "param", "code"),
    [
        ("not base64!", "input[0].content[0].file_data", "invalid_value"),
        ("data:text/plain,raw", "input[0].content[0].file_data", "invalid_value"),
        (base64.b64encode(b"x" * 10_001).decode(), "input[0].content[0]", "file_too_large"),
    ],
)
async def test_bad_or_oversized_file_data_is_a_400(file_data: str, param: str, code: str) -> None:
    part = {"type": "input_file", "filename": "a.txt", "file_data": file_data}
    with pytest.raises(RequestError) as refused:
        await reader().read(part, "input[0].content[0]")
    assert (refused.value.param, refused.value.code) == (param, code)


async def test_file_urls_are_fetched_under_the_allowed_prefixes_only() -> None:
    where = "input[0].content[0]"
    notes = await reader().read(
        {"type": "input_file", "file_url": "https://files.test/notes.md"}, where
    )
    assert notes["text"] == "# Notes\n"
    # A server that does not know the type: the bytes say PDF.
    report = await reader().read(
        {"type": "input_file", "file_url": "https://files.test/report"}, where
    )
    assert report["text"] == "Quarterly"
    refusals = {
        "https://elsewhere.test/a.txt": ("input[0].content[0].file_url", "unsupported_value"),
        "https://files.test/missing.txt": ("input[0].content[0].file_url", "invalid_value"),
        "https://files.test/moved.txt": ("input[0].content[0].file_url", "invalid_value"),
        "https://files.test/big.txt": ("input[0].content[0]", "file_too_large"),
    }
    for url, (param, code) in refusals.items():
        with pytest.raises(RequestError) as refused:
            await reader().read({"type": "input_file", "file_url": url}, where)
        assert (refused.value.param, refused.value.code) == (param, code), url
    closed = FileReader(FileLimits(10_000, (), 5), transport=httpx.MockTransport(files_server))
    with pytest.raises(RequestError) as refused:
        await closed.read({"type": "input_file", "file_url": "https://files.test/notes.md"}, where)
    assert refused.value.code == "unsupported_value"


# --- given to the model --------------------------------------------------------------------


def test_the_model_reads_a_file_between_tags_naming_it() -> None:
    item = {
        "type": "message",
        "role": "user",
        "content": [
            {"type": "input_text", "text": "Summarise:"},
            {"type": "input_file", "filename": "notes.md", "file_data": "x", "text": "# Notes"},
        ],
    }
    [message] = to_chat_messages(None, [item])
    assert message == {
        "role": "user",
        "content": 'Summarise:\n<file name="notes.md">\n# Notes\n</file>\n',
    }
    with_image = {
        **item,
        "content": [*item["content"], {"type": "input_image", "image_url": "https://i.test/a"}],
    }
    [message] = to_chat_messages(None, [with_image])
    assert message["content"][1] == {
        "type": "text",
        "text": '\n<file name="notes.md">\n# Notes\n</file>\n',
    }
    unnamed = {"type": "input_file", "file_url": "https://f.test/r", "text": "T"}
    [message] = to_chat_messages(None, [{**item, "content": [unnamed]}])
    assert message["content"] == '\n<file name="https://f.test/r">\nT\n</file>\n'
