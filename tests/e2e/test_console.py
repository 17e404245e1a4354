"""The operator console over raw HTTP against a real API and Postgres: who gets in (the login
form, its session cookie, CSRF on every action), what the overview shows (counts, queues,
workers, inline runs, failures, a filtered list paged by keyset) and a response's page,
cancel and delete through the API's own paths, and bad filters answered with a 400.

The module's API has a database of its own that no worker serves: background responses stay
queued, and the overview's figures are this module's alone.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import openai
import psycopg
import pytest

from app.config import Settings
from tests.support.clients import sdk_client
from tests.support.console import HTML, ConsoleClient, console_client, csrf_in
from tests.support.database import migrated_scratch_database
from tests.support.servers import running_api
from tests.support.waiting import wait_for

ADMIN_KEY = "console-admin-key-9c41"
SLOW = " ".join(f"w{i}" for i in range(40)) + " [[delay:150]]"


@dataclass(frozen=True)
class Idle:
    url: str
    database_url: str

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            cursor = conn.execute(query.encode(), params)
            return cursor.fetchall() if cursor.description else []


@pytest.fixture(scope="module")
def idle(postgres_admin_url: str, make_settings: Callable[..., Settings]) -> Iterator[Idle]:
    with migrated_scratch_database(postgres_admin_url) as database_url:
        settings = make_settings(database_url=database_url, admin_api_keys=ADMIN_KEY)
        with running_api(settings) as url:
            yield Idle(url, database_url)


@pytest.fixture(scope="module")
def sdk(idle: Idle) -> Iterator[openai.OpenAI]:
    with sdk_client(idle.url, timeout=30) as client:
        yield client


@pytest.fixture
def admin(idle: Idle) -> Iterator[ConsoleClient]:
    with console_client(idle.url) as console:
        assert console.log_in(ADMIN_KEY).status_code == 303
        yield console


def section(page: str, element_id: str) -> str:
    """The HTML of the element with this id, up to the end of its section."""
    start = page.index(f'id="{element_id}"')
    end = page.find("</section>", start)
    return page[start : end if end >= 0 else len(page)]


def listed_ids(page: str) -> list[str]:
    return re.findall(r'<tr data-id="([^"]+)">', page)


def envelope(reply: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = reply.json()["error"]
    return error


def test_every_console_page_sends_a_stranger_to_the_login_form(
    idle: Idle, sdk: openai.OpenAI
) -> None:
    queued = sdk.responses.create(model="demo", input="left alone", background=True)
    paths = [
        "/console",
        "/console?status=failed&mode=flex",
        f"/console/responses/{queued.id}",
        f"/console/responses/{queued.id}/live",
        f"/console/responses/{queued.id}/events",
    ]
    with console_client(idle.url) as stranger:
        for path in paths:
            reply = stranger.page(path)
            assert reply.status_code == 303, path
            assert reply.headers["location"] == f"/console/login?next={quote(path, safe='')}"
        for action in ("cancel", "delete"):
            reply = stranger.http.post(f"/console/responses/{queued.id}/{action}")
            assert reply.status_code == 303
            assert reply.headers["location"].startswith("/console/login")
        # The login form's own style and script are not secrets.
        assert stranger.http.get("/console/static/console.css").status_code == 200
    assert sdk.responses.retrieve(queued.id).status == "queued"


def test_an_admin_key_opens_a_strict_http_only_session(idle: Idle) -> None:
    with console_client(idle.url) as console:
        refused = console.log_in("not-the-admin-key")
        assert refused.status_code == 401
        assert "does not open the console" in refused.text
        assert "ferry_console=" not in refused.headers.get("set-cookie", "")
        # Asked by something else than a browser, the refusal is OpenAI's error envelope.
        token = csrf_in(console.http.get("/console/login").text)
        bare = console.http.post("/console/login", data={"key": "k" * 600, "csrf": token})
        assert bare.status_code == 401
        assert (envelope(bare)["param"], envelope(bare)["code"]) == ("key", "invalid_api_key")

        accepted = console.log_in(ADMIN_KEY, next_path="/console?status=failed")
        assert accepted.status_code == 303
        assert accepted.headers["location"] == "/console?status=failed"
        [session] = [
            cookie
            for cookie in accepted.headers.get_list("set-cookie")
            if cookie.startswith("ferry_console=")
        ]
        attributes = {part.strip().lower() for part in session.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/console", "max-age=28800"} <= attributes
        assert ADMIN_KEY not in session

        overview = console.page("/console")
        assert overview.status_code == 200
        assert "ADMIN_API_KEYS key #" in overview.text and ADMIN_KEY not in overview.text
        assert "script-src 'self'" in overview.headers["content-security-policy"]
        assert overview.headers["cache-control"] == "no-store"


def test_login_sends_an_admin_only_to_console_pages(idle: Idle) -> None:
    for elsewhere in ("https://elsewhere.example/", "//elsewhere.example/console", "/v1/x"):
        with console_client(idle.url) as console:
            reply = console.log_in(ADMIN_KEY, next_path=elsewhere)
            assert reply.status_code == 303
            assert reply.headers["location"] == "/console"


def test_a_login_without_its_form_token_is_refused(idle: Idle) -> None:
    with console_client(idle.url) as console:
        bare = console.http.post("/console/login", data={"key": ADMIN_KEY}, headers=HTML)
        assert bare.status_code == 403 and "expired" in bare.text
        token = csrf_in(console.http.get("/console/login").text)
    # The token of one browser's form is worth nothing in another, which lacks its cookie.
    with console_client(idle.url) as other:
        reply = other.http.post("/console/login", data={"key": ADMIN_KEY, "csrf": token})
        assert reply.status_code == 403 and envelope(reply)["param"] == "csrf"
        assert "ferry_console=" not in reply.headers.get("set-cookie", "")
        assert other.page("/console").status_code == 303


def test_an_action_without_the_session_csrf_token_is_refused(
    idle: Idle, sdk: openai.OpenAI, admin: ConsoleClient
) -> None:
    queued = sdk.responses.create(model="demo", input="keep me queued", background=True)
    page = f"/console/responses/{queued.id}"
    action = f"{page}/cancel"
    for token in ("", "not-the-token"):
        reply = admin.act(action, on_page=page, csrf=token)
        assert reply.status_code == 403
        assert envelope(reply)["param"] == "csrf"
        assert envelope(reply)["code"] == "invalid_csrf_token"
    as_page = admin.http.post(action, data={"csrf": "nope"}, headers=HTML)
    assert as_page.status_code == 403 and "CSRF" in as_page.text
    assert sdk.responses.retrieve(queued.id).status == "queued"

    done = admin.act(action, on_page=page)
    assert done.status_code == 303 and done.headers["location"] == page
    assert sdk.responses.retrieve(queued.id).status == "cancelled"
    [(job_status,)] = idle.sql(
        "SELECT j.status::text FROM procrastinate_jobs j JOIN responses r ON r.job_id = j.id"
        " WHERE r.id = %s",
        queued.id,
    )
    assert job_status == "cancelled"


def test_a_tampered_session_is_no_session(idle: Idle, admin: ConsoleClient) -> None:
    signed, signature = admin.http.cookies["ferry_console"].rsplit(".", 1)
    # The signature's first character, not its last: the last base64 character of a
    # 20-byte digest carries two padding bits that decoding ignores, so changing only
    # those ('A' to 'B') would leave the signature as it was.
    altered = ("A" if signature[0] != "A" else "B") + signature[1:]
    flipped = f"{signed}.{altered}"
    admin.http.cookies.set("ferry_console", flipped, path="/console")
    assert admin.page("/console").status_code == 303


def test_a_session_lasts_console_session_ttl_s(
    idle: Idle, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(
        database_url=idle.database_url, admin_api_keys=ADMIN_KEY, console_session_ttl_s=1
    )
    with running_api(settings) as url, console_client(url) as console:
        assert console.log_in(ADMIN_KEY).status_code == 303
        assert console.page("/console").status_code == 200
        wait_for(
            lambda: console.page("/console").status_code == 303,
            timeout_s=10,
            what="the session to expire",
        )


def test_delete_takes_only_a_finished_response(
    idle: Idle, sdk: openai.OpenAI, admin: ConsoleClient
) -> None:
    queued = sdk.responses.create(model="demo", input="to be deleted", background=True)
    page = f"/console/responses/{queued.id}"
    early = admin.act(f"{page}/delete", on_page=page)
    assert early.status_code == 400
    assert envelope(early)["param"] == "response_id"
    assert envelope(early)["code"] == "response_running"
    assert 'id="delete"' not in admin.page(page).text  # no button for what it refuses

    assert admin.act(f"{page}/cancel", on_page=page).status_code == 303
    assert 'id="delete"' in admin.page(page).text
    deleted = admin.act(f"{page}/delete", on_page=page)
    assert deleted.status_code == 303
    assert deleted.headers["location"] == f"/console?deleted={queued.id}"
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(queued.id)
    assert queued.id in section(admin.page(deleted.headers["location"]).text, "deleted-notice")
    assert admin.page(page).status_code == 404


def test_the_overview_shows_counts_queues_workers_inline_runs_and_failures(
    idle: Idle, sdk: openai.OpenAI, admin: ConsoleClient
) -> None:
    queued = [
        sdk.responses.create(model="demo", input=f"waiting {n}", background=True) for n in (1, 2)
    ]
    failed = sdk.responses.create(model="demo", input="[[status:500]] refuse this")
    assert failed.status == "failed"
    # A worker of procrastinate's, alive and holding one job; another silent for an hour.
    [(busy,)] = idle.sql("INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id")
    [(silent,)] = idle.sql(
        "INSERT INTO procrastinate_workers (last_heartbeat)"
        " VALUES (now() - interval '1 hour') RETURNING id"
    )
    idle.sql(
        "UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s"
        " WHERE id = (SELECT job_id FROM responses WHERE id = %s)",
        busy,
        queued[0].id,
    )

    body = {"model": "demo", "input": f"inline {SLOW}", "stream": True}
    with httpx.stream("POST", f"{idle.url}/v1/responses", json=body, timeout=30) as stream:
        lines = stream.iter_lines()  # kept: a generator collected would close the stream
        assert next(lines) == "event: response.created"
        page = admin.page("/console").text
        truth = dict(
            idle.sql(
                "SELECT status, count(*) FROM responses"
                " WHERE created_at > now() - interval '1 hour' GROUP BY status"
            )
        )
    inline = section(page, "inline")

    counts = dict(
        (status, (int(hour), int(day)))
        for status, hour, day in re.findall(
            r's-(\w+)">\w+</span></a></td>\s*<td class="num">(\d+)</td>\s*'
            r'<td class="num">(\d+)</td>',
            section(page, "status-counts"),
        )
    )
    assert {status: hour for status, (hour, _) in counts.items() if hour} == truth
    assert counts["failed"][0] >= 1 and counts["queued"][0] >= 1

    queues = re.findall(
        r"<td>(\w+) <span class=\"muted\">\((\w+)\)</span></td>\s*"
        r'<td class="num">(\d+)</td>\s*<td class="num">([^<]+)</td>',
        section(page, "queues"),
    )
    [(depth,)] = idle.sql(
        "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = 'responses' AND status = 'todo'"
    )
    assert queues[0][:3] == ("default", "responses", str(depth)) and depth >= 1
    assert queues[0][3].endswith(" s")  # how long the oldest has waited
    assert queues[1][:3] == ("flex", "flex", "0")

    workers = section(page, "workers")
    busy_row = workers[workers.index(f"<td>#{busy}</td>") :].split("</tr>")[0]
    assert "alive" in busy_row and queued[0].id in busy_row
    silent_row = workers[workers.index(f"<td>#{silent}</td>") :].split("</tr>")[0]
    assert "stalled" in silent_row and "idle" in silent_row

    assert ">stream<" in inline and "open API" in inline
    [(inline_id,)] = idle.sql(
        "SELECT id FROM responses WHERE request -> 'input' -> 0 -> 'content' -> 0 ->> 'text'"
        " LIKE 'inline w0%%' ORDER BY created_at DESC LIMIT 1"
    )
    assert inline_id in inline

    failures = section(page, "failures")
    assert failed.id in failures and "upstream_error" in failures


def test_the_list_filters_and_pages_by_keyset(
    idle: Idle, sdk: openai.OpenAI, admin: ConsoleClient
) -> None:
    model = f"console-page-{uuid.uuid4().hex[:8]}"
    made = [sdk.responses.create(model=model, input=f"page {n}").id for n in range(5)]
    newest_first = list(reversed(made))

    seen: list[str] = []
    url: str | None = f"/console?model={model}&limit=2"
    while url is not None:
        page = admin.page(url).text
        ids = listed_ids(page)
        assert 1 <= len(ids) <= 2
        seen += ids
        older = re.search(r'<a href="([^"]+)" id="older">', page)
        url = older.group(1).replace("&amp;", "&") if older else None
        if url is not None:
            assert "before=" in url and f"model={model}" in url and "limit=2" in url
    assert seen == newest_first

    def listed(query: str) -> list[str]:
        return listed_ids(admin.page(f"/console?model={model}&{query}").text)

    assert listed("status=completed") == newest_first
    assert listed("status=failed") == []
    assert listed("mode=blocking") == newest_first
    assert listed("mode=stream") == listed("mode=background") == []
    assert listed("since=15m") == newest_first
    assert listed("key=open") == newest_first
    assert listed("key=%23ffffffff") == []
    assert listed(f"id={made[2][:14]}") == [made[2]]
    # A whole id goes straight to its page.
    exact = admin.page(f"/console?id={made[2]}")
    assert exact.status_code == 303 and exact.headers["location"] == f"/console/responses/{made[2]}"


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("status=finished", "status"),
        ("mode=sideways", "mode"),
        ("since=1y", "since"),
        ("limit=0", "limit"),
        ("limit=many", "limit"),
        ("before=yesterday", "before"),
        ("model=" + "m" * 201, "model"),
    ],
)
def test_a_bad_filter_is_a_400_naming_it(admin: ConsoleClient, query: str, param: str) -> None:
    reply = admin.http.get(f"/console?{query}")
    assert reply.status_code == 400
    assert envelope(reply)["param"] == param
    assert envelope(reply)["type"] == "invalid_request_error"
    as_page = admin.page(f"/console?{query}")
    assert as_page.status_code == 400
    assert f"<code>{param}</code>" in as_page.text


def test_a_response_page_shows_its_request_steps_and_escaped_content(
    sdk: openai.OpenAI, admin: ConsoleClient
) -> None:
    hostile = "<script>alert(1)</script>"
    done = sdk.responses.create(
        model="demo",
        instructions="Be <em>brief</em>.",
        input=f'{hostile} [[call:lookup_weather {{"city": "Oslo"}}]]',
        max_output_tokens=300,
        metadata={"team": "ops"},
    )
    page = admin.page(f"/console/responses/{done.id}").text

    steps = re.findall(r'<span class="what">([^<]+)</span>', section(page, "timeline"))
    assert steps[0] == "created" and steps[-1] == "completed"
    assert [s for s in steps if "turn" in s or "call" in s] == [
        "model turn",
        "tool call: lookup_weather",
        "model turn",
    ]
    assert "attempt 1" in section(page, "timeline")
    request = section(page, "request")
    assert "function lookup_weather" not in request  # registered tools are the server's
    assert "<dt>max_output_tokens</dt><dd><code>300</code>" in request
    assert "&lt;em&gt;brief&lt;/em&gt;" in request
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert hostile not in page and "<em>" not in page
    assert 'usage captured</dt><dd id="usage-captured">yes' in page


def test_an_unknown_response_is_a_404(admin: ConsoleClient) -> None:
    for response_id in ("resp_nowhere", "x" * 300):
        page = admin.page(f"/console/responses/{response_id}")
        assert page.status_code == 404 and "No response has that id." in page.text
        reply = admin.http.get(f"/console/responses/{response_id}/live")
        assert reply.status_code == 404 and envelope(reply)["param"] == "response_id"
