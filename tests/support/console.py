"""The operator console over raw HTTP, as a browser would use it: cookies kept, the login
form's token and each page's CSRF token read from the HTML."""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import Iterator

import httpx

_CSRF = re.compile(r'name="csrf" value="([^"]*)"')
HTML = {"accept": "text/html"}


def csrf_in(page: str) -> str:
    found = _CSRF.search(page)
    assert found is not None, "no CSRF token on the page"
    return html.unescape(found.group(1))


class ConsoleClient:
    def __init__(self, client: httpx.Client) -> None:
        self.http = client

    def log_in(self, key: str, next_path: str = "/console") -> httpx.Response:
        form = self.http.get("/console/login")
        assert form.status_code == 200, form.text
        data = {"key": key, "csrf": csrf_in(form.text), "next": next_path}
        return self.http.post("/console/login", data=data, headers=HTML)

    def page(self, path: str) -> httpx.Response:
        return self.http.get(path, headers=HTML)

    def act(self, path: str, *, on_page: str, csrf: str | None = None) -> httpx.Response:
        """POST an action the way its button on `on_page` does (or with another `csrf`)."""
        token = csrf if csrf is not None else csrf_in(self.page(on_page).text)
        return self.http.post(path, data={"csrf": token})


@contextlib.contextmanager
def console_client(base_url: str) -> Iterator[ConsoleClient]:
    with httpx.Client(base_url=base_url, timeout=30, follow_redirects=False) as client:
        yield ConsoleClient(client)
