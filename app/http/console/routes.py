"""The console's routes: login, the overview, a response's page (with its live parts), and
the two actions, cancel and delete, which go through the API's own paths.

Every route but the login form (and the static files) needs a session; without one, it
redirects to the login form. Every POST needs the session's CSRF token. A refusal is an
HTML page for a browser, and the OpenAI error envelope for any other client.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from app import ids
from app.engine.api_side import ApiSide
from app.engine.console import Console
from app.engine.console_log import event_line
from app.engine.console_reads import PAGE_SIZE, SINCE, ConsoleReads, Detail
from app.engine.console_timeline import Mode
from app.engine.errors import NotFound, RequestError
from app.http.console.filters import list_query, list_url
from app.http.console.render import SECURITY_HEADERS, page
from app.http.console.session import (
    Session,
    csrf_matches,
    end_session,
    login_token_matches,
    new_login_token,
    read_session,
    set_login_cookie,
    start_session,
)
from app.http.errors import HttpError, Unauthorized, status_of
from app.http.sse import KEEPALIVE, SSE_HEADERS
from app.statuses import ResponseStatus

log = logging.getLogger(__name__)

LOGIN_PATH = "/console/login"
HOME_PATH = "/console"
# A key longer than this is no key of ours: refused without being hashed.
_LONGEST_KEY = 512

AdminHandler = Callable[[Request, Session], Awaitable[Response]]


class Forbidden(HttpError):
    status_code = 403


def _reads(request: Request) -> ConsoleReads:
    console: Console = request.app.state.console
    return console.reads


def _service(request: Request) -> ApiSide:
    service: ApiSide = request.app.state.service
    return service


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def admin_only(handler: AdminHandler) -> Callable[[Request], Awaitable[Response]]:
    """The handler, for admins only: others go to the login form; a POST must carry the
    session's CSRF token; a refusal is shown as a page to a browser."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        session = await read_session(request)
        if session is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"{LOGIN_PATH}?next={quote(target, safe='')}", 303)
        try:
            if request.method == "POST":
                form = await request.form()
                if not csrf_matches(session, form.get("csrf")):
                    raise Forbidden(
                        "This form is out of date (CSRF token missing or wrong); reload the "
                        "page and try again.",
                        param="csrf",
                        code="invalid_csrf_token",
                    )
            return await handler(request, session)
        except RequestError as exc:
            if not _wants_html(request):
                raise
            return page(
                request,
                "error.html",
                {"session": session, "error": exc, "status": status_of(exc)},
                status_code=status_of(exc),
            )

    return endpoint


# --- logging in and out ----------------------------------------------------------------


async def login_form(request: Request) -> Response:
    if await read_session(request) is not None:
        return RedirectResponse(_safe_next(request.query_params.get("next")), 303)
    return await _login_page(request, error=None, status_code=200)


async def login(request: Request) -> Response:
    form = await request.form()
    next_path = _safe_next(form.get("next"))
    if not await login_token_matches(request, form.get("csrf")):
        expired = Forbidden(
            "This form had expired; enter the key again.",
            param="csrf",
            code="invalid_csrf_token",
        )
        return await _refused_login(request, expired, next_path)
    key = form.get("key")
    console: Console = request.app.state.console
    admin = None
    if isinstance(key, str) and 0 < len(key.strip()) <= _LONGEST_KEY:
        admin = await console.access.admin_with_key(key.strip())
    if admin is None:
        log.warning("console login refused")
        refused = Unauthorized(
            "That key does not open the console.", param="key", code="invalid_api_key"
        )
        return await _refused_login(request, refused, next_path)
    response = RedirectResponse(next_path, 303)
    await start_session(request, response, admin)
    log.info("console login", extra={"admin": admin.label})
    return response


async def _refused_login(request: Request, refusal: HttpError, next_path: str) -> Response:
    """The form again, saying why, for a browser; the error envelope for any other client."""
    if not _wants_html(request):
        raise refusal
    return await _login_page(request, refusal.message, refusal.status_code, next_path)


async def _login_page(
    request: Request, error: str | None, status_code: int, next_path: str | None = None
) -> Response:
    login_token = await new_login_token(request)
    context = {
        "session": None,
        "error": error,
        "next": next_path or _safe_next(request.query_params.get("next")),
        "csrf": login_token.token,
    }
    response = page(request, "login.html", context, status_code=status_code)
    set_login_cookie(request, response, login_token)
    return response


def _safe_next(value: object) -> str:
    """Where to go after logging in: a console path, never another site."""
    if isinstance(value, str) and value.startswith(HOME_PATH) and "\\" not in value:
        return value
    return HOME_PATH


@admin_only
async def logout(request: Request, session: Session) -> Response:
    response = RedirectResponse(LOGIN_PATH, 303)
    end_session(response)
    log.info("console logout", extra={"admin": session.admin.label})
    return response


# --- pages -------------------------------------------------------------------------------


@admin_only
async def overview(request: Request, session: Session) -> Response:
    query = list_query(request)
    reads = _reads(request)
    if query.id and ids.is_well_formed(query.id) and await reads.exists(query.id):
        return RedirectResponse(f"/console/responses/{query.id}", 303)
    shown = await reads.overview(query)
    older = list_url(request, before=shown.page.next_before) if shown.page.next_before else None
    context = {
        "session": session,
        "overview": shown,
        "query": query,
        "statuses": list(ResponseStatus),
        "modes": list(Mode),
        "ranges": list(SINCE),
        "page_size": PAGE_SIZE,
        "older_url": older,
        "newest_url": list_url(request, before=None) if query.before else None,
        "deleted": request.query_params.get("deleted"),
        "list_url": functools.partial(list_url, request),
    }
    return page(request, "overview.html", context)


async def _detail(request: Request) -> Detail:
    response_id = request.path_params["response_id"]
    detail = await _reads(request).detail(response_id) if ids.is_well_formed(response_id) else None
    if detail is None:
        raise NotFound("No response has that id.", param="response_id")
    return detail


@admin_only
async def response_page(request: Request, session: Session) -> Response:
    detail = await _detail(request)
    return page(request, "response.html", {"session": session, "detail": detail})


@admin_only
async def response_live(request: Request, session: Session) -> Response:
    """The parts of a response's page that change while it runs, for the page to swap in."""
    detail = await _detail(request)
    return page(request, "_live.html", {"session": session, "detail": detail})


@admin_only
async def response_events(request: Request, session: Session) -> Response:
    """The response's event log for the page's EventSource: replayed from after the last
    event the page has (Last-Event-ID on a reconnect), then live through the same
    LISTEN/NOTIFY tail as `GET /v1/responses/{id}?stream=true`, then an `end` event."""
    service = _service(request)
    stored = await service.get_for_admin(request.path_params["response_id"])
    after = _last_event_id(request)
    events = service.tail(stored, after)

    async def frames() -> AsyncIterator[bytes]:
        async for batch in events:
            if batch is None:
                yield KEEPALIVE
                continue
            lines = (event_line(event) for event in batch)
            yield b"".join(b"id: %d\ndata: %s\n\n" % (ln["seq"], orjson.dumps(ln)) for ln in lines)
        yield b"event: end\ndata: {}\n\n"

    headers = {**SSE_HEADERS, **SECURITY_HEADERS}
    return StreamingResponse(frames(), media_type="text/event-stream", headers=headers)


def _last_event_id(request: Request) -> int:
    raw = request.headers.get("last-event-id") or request.query_params.get("after") or "-1"
    try:
        after = int(raw)
    except ValueError:
        after = None
    if after is None or after < -1:
        raise RequestError(
            "Invalid 'after': expected a sequence number (an integer, -1 or more).",
            param="after",
            code="invalid_value",
        )
    return after


# --- actions -----------------------------------------------------------------------------


@admin_only
async def cancel(request: Request, session: Session) -> Response:
    response_id = request.path_params["response_id"]
    cancelled = await _service(request).cancel_for_admin(response_id)
    log.info(
        "cancelled from the console",
        extra={
            "response_id": response_id,
            "status": cancelled["status"],
            "admin": session.admin.label,
        },
    )
    return RedirectResponse(f"/console/responses/{response_id}", 303)


@admin_only
async def delete(request: Request, session: Session) -> Response:
    response_id = request.path_params["response_id"]
    service = _service(request)
    stored = await service.get_for_admin(response_id)
    if not stored.is_terminal:
        raise RequestError(
            f"Response {response_id} is still {stored.status}: cancel it first; the console "
            "deletes only finished responses.",
            param="response_id",
            code="response_running",
        )
    await service.delete_for_admin(response_id)
    log.info(
        "deleted from the console", extra={"response_id": response_id, "admin": session.admin.label}
    )
    return RedirectResponse(f"{HOME_PATH}?deleted={quote(response_id)}", 303)


def console_routes() -> list[BaseRoute]:
    static = StaticFiles(directory=Path(__file__).with_name("static"))
    return [
        Route(HOME_PATH, overview, methods=["GET"]),
        Route(LOGIN_PATH, login_form, methods=["GET"]),
        Route(LOGIN_PATH, login, methods=["POST"]),
        Route("/console/logout", logout, methods=["POST"]),
        Route("/console/responses/{response_id}", response_page, methods=["GET"]),
        Route("/console/responses/{response_id}/live", response_live, methods=["GET"]),
        Route("/console/responses/{response_id}/events", response_events, methods=["GET"]),
        Route("/console/responses/{response_id}/cancel", cancel, methods=["POST"]),
        Route("/console/responses/{response_id}/delete", delete, methods=["POST"]),
        Mount("/console/static", static, name="console-static"),
    ]
