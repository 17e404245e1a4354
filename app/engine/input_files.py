"""`input_file` content parts: the file read once, when the request is accepted, and its
text kept on the part for the model.

A chat-completions upstream takes text (and images), so Ferry passes a file to the model as
its text: plain text, Markdown, JSON and CSV as they are (UTF-8), a PDF as the text of its
pages (pypdf). A file of any other type, or one that cannot be read, is a 400 naming the
part. The file comes as `file_data` (base64, or a data URL with its media type) or from
`file_url` (only under the prefixes INPUT_FILE_URLS allows: Ferry fetches it), and holds
at most INPUT_FILE_MAX_BYTES.

The part is stored as sent, with the extracted `text` beside it: a conversation continued
later, or a run a worker takes over, reads the text from the row and never the file again.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import mimetypes
import posixpath
import urllib.parse
from dataclasses import dataclass

import httpx
import pypdf
import pypdf.errors

from app.config import Settings
from app.engine.errors import RequestError
from app.shapes import Part

PDF = "application/pdf"
#: Media types passed to the model as they are, as UTF-8 text.
TEXT_TYPES = frozenset(
    {"text/plain", "text/markdown", "text/x-markdown", "application/json", "text/csv"}
)
#: What a file's name says it holds, where the platform's table may not know it.
_TYPE_BY_EXTENSION = {
    ".txt": "text/plain",
    ".text": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".json": "application/json",
    ".csv": "text/csv",
    ".pdf": PDF,
}
SUPPORTED = "plain text, Markdown, JSON, CSV and PDF"


@dataclass(frozen=True)
class FileLimits:
    max_bytes: int
    url_prefixes: tuple[str, ...]  # empty: `file_url` is refused
    fetch_timeout_s: float

    @classmethod
    def of(cls, settings: Settings) -> FileLimits:
        return cls(
            settings.input_file_max_bytes,
            tuple(settings.input_file_url_prefixes),
            settings.input_file_timeout_s,
        )


def _refused(where: str, message: str, code: str = "invalid_value") -> RequestError:
    return RequestError(message, param=where, code=code)


def _media_type(declared: str | None, name: str | None) -> str | None:
    """The file's media type: the one declared (a data URL's, a server's Content-Type),
    else the one its name's extension says; None when neither says. Octet-stream says
    nothing: a server that does not know says it."""
    kind = (declared or "").split(";", 1)[0].strip().lower()
    if kind and kind != "application/octet-stream":
        return kind
    if name:
        extension = posixpath.splitext(name.lower())[1]
        return _TYPE_BY_EXTENSION.get(extension) or mimetypes.guess_type(name)[0]
    return None


def _decoded_data(file_data: str, where: str) -> tuple[bytes, str | None]:
    """The bytes of `file_data` and the media type its data URL declares (if it is one)."""
    declared = None
    payload = file_data
    if file_data.startswith("data:"):
        header, comma, payload = file_data[5:].partition(",")
        if not comma or not header.endswith(";base64"):
            raise _refused(
                f"{where}.file_data", "Invalid 'file_data': a data URL must be base64 encoded."
            )
        declared = header.removesuffix(";base64") or None
    try:
        return base64.b64decode(payload, validate=True), declared
    except (binascii.Error, ValueError):
        raise _refused(f"{where}.file_data", "Invalid 'file_data': not valid base64.") from None


def _pdf_text(data: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(data))
    if reader.is_encrypted:
        raise pypdf.errors.FileNotDecryptedError("encrypted")
    return "\n\n".join((page.extract_text() or "").strip() for page in reader.pages).strip()


async def file_text(data: bytes, media_type: str | None, label: str, where: str) -> str:
    """The text the model is given for a file, or a 400 naming `where`."""
    if media_type is None:  # nothing said what it is: it is what its bytes look like
        media_type = PDF if data.startswith(b"%PDF-") else "text/plain"
    if media_type == PDF:
        try:
            # Parsing is CPU work: off the event loop, which serves every other request.
            text = await asyncio.to_thread(_pdf_text, data)
        except (pypdf.errors.PyPdfError, ValueError, KeyError, TypeError, AttributeError):
            raise _refused(where, f"The file {label} could not be read as a PDF.") from None
        if not text:
            raise _refused(
                where,
                f"The PDF {label} has no text to read (Ferry gives files to the model as "
                "text; a scanned PDF has none).",
            )
        return text.replace("\x00", "")
    if media_type not in TEXT_TYPES:
        raise _refused(
            where,
            f"Unsupported file type '{media_type}' for {label}: Ferry gives files to the model "
            f"as text, and reads {SUPPORTED}.",
            "unsupported_file",
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _refused(where, f"The file {label} is not UTF-8 text.") from None
    if "\x00" in text:
        raise _refused(where, f"The file {label} is not text: it holds NUL characters.")
    return text


class FileReader:
    """Reads the files of `input_file` parts, within the server's limits."""

    def __init__(
        self, limits: FileLimits, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        """`transport`: how `file_url` is fetched (the tests give a MockTransport)."""
        self.limits = limits
        self.transport = transport

    async def read(self, part: Part, where: str) -> Part:
        """The part with the `text` of its file."""
        name = part.get("filename")
        if part.get("file_data") is not None:
            data, declared = _decoded_data(part["file_data"], where)
            self._check_size(len(data), where)
            label = f"'{name}'" if name else "in file_data"
        else:
            url = part["file_url"]
            data, declared = await self._fetch(url, where)
            name = name or posixpath.basename(urllib.parse.urlsplit(url).path) or None
            label = f"'{name}'" if name else f"at {url}"
        text = await file_text(data, _media_type(declared, name), label, where)
        return {**part, "text": text}

    def _check_size(self, size: int, where: str) -> None:
        if size > self.limits.max_bytes:
            raise _refused(
                where,
                f"The file is larger than the limit of {self.limits.max_bytes} bytes.",
                "file_too_large",
            )

    async def _fetch(self, url: str, where: str) -> tuple[bytes, str | None]:
        """The body `url` answers with, and its Content-Type."""
        param = f"{where}.file_url"
        if not url.startswith(self.limits.url_prefixes) or not self.limits.url_prefixes:
            raise _refused(
                param,
                "This server does not fetch files from that URL (INPUT_FILE_URLS); send the "
                "file as file_data instead.",
                "unsupported_value",
            )
        try:
            # Redirects are not followed: they could lead off the allowed prefixes.
            async with (
                httpx.AsyncClient(
                    timeout=self.limits.fetch_timeout_s, transport=self.transport
                ) as client,
                client.stream("GET", url) as reply,
            ):
                if reply.status_code != 200:
                    raise _refused(param, f"Fetching the file failed: HTTP {reply.status_code}.")
                declared = reply.headers.get("content-length")
                if declared is not None and declared.isdigit():
                    self._check_size(int(declared), where)
                chunks, size = [], 0
                async for chunk in reply.aiter_bytes():
                    size += len(chunk)
                    self._check_size(size, where)
                    chunks.append(chunk)
                content_type = reply.headers.get("content-type")
        except httpx.HTTPError as exc:
            raise _refused(param, f"Fetching the file failed: {type(exc).__name__}.") from None
        return b"".join(chunks), content_type
