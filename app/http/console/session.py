"""Console sessions: a signed cookie naming the admin (by the digest of their key) and the
token every form of the session must send back (CSRF).

The cookie is HttpOnly (no script reads it), SameSite=Strict (no other site's page sends
it) and scoped to /console; it is signed, with its time, so it can be neither forged nor
kept past CONSOLE_SESSION_TTL_S. Every request checks the admin again: a revoked key's
session ends at once.

The login form has a token of its own, in a short-lived cookie of the same kind, so that no
other site can log a browser in with its own key.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from app.engine.console import Console
from app.engine.console_access import Admin, ConsoleAccess

SESSION_COOKIE = "ferry_console"
LOGIN_COOKIE = "ferry_console_login"
COOKIE_PATH = "/console"
LOGIN_TOKEN_TTL_S = 3600
_SESSION_SALT = "ferry.console.session"
_LOGIN_SALT = "ferry.console.login"


@dataclass(frozen=True)
class Session:
    admin: Admin
    csrf: str  # every form of the session carries it; a POST without it is refused


def _access(request: Request) -> ConsoleAccess:
    console: Console = request.app.state.console
    return console.access


async def _signer(request: Request, salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(await _access(request).session_secret(), salt=salt)


async def read_session(request: Request) -> Session | None:
    """The request's session, if its cookie is sound, fresh, and still names an admin."""
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    ttl_s = request.app.state.settings.console_session_ttl_s
    try:
        data: Any = (await _signer(request, _SESSION_SALT)).loads(raw, max_age=ttl_s)
    except BadSignature:  # altered, signed elsewhere, or expired
        return None
    if not (isinstance(data, dict) and isinstance(data.get("d"), str)):
        return None
    if not isinstance(data.get("c"), str):
        return None
    admin = await _access(request).admin_with_digest(data["d"])
    return Session(admin, data["c"]) if admin is not None else None


async def start_session(request: Request, response: Response, admin: Admin) -> None:
    value = (await _signer(request, _SESSION_SALT)).dumps(
        {"d": admin.digest, "c": secrets.token_urlsafe(24)}
    )
    ttl_s = int(request.app.state.settings.console_session_ttl_s)
    _set(request, response, SESSION_COOKIE, value, ttl_s, COOKIE_PATH)
    response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)


def end_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)


def csrf_matches(session: Session, sent: object) -> bool:
    return isinstance(sent, str) and hmac.compare_digest(sent.encode(), session.csrf.encode())


@dataclass(frozen=True)
class LoginToken:
    """The login form's token, and its signed copy for the form's cookie."""

    token: str
    cookie: str


async def new_login_token(request: Request) -> LoginToken:
    token = secrets.token_urlsafe(24)
    return LoginToken(token, (await _signer(request, _LOGIN_SALT)).dumps(token))


def set_login_cookie(request: Request, response: Response, login: LoginToken) -> None:
    _set(request, response, LOGIN_COOKIE, login.cookie, LOGIN_TOKEN_TTL_S, COOKIE_PATH)


async def login_token_matches(request: Request, sent: object) -> bool:
    raw = request.cookies.get(LOGIN_COOKIE)
    if not raw or not isinstance(sent, str):
        return False
    try:
        token: Any = (await _signer(request, _LOGIN_SALT)).loads(raw, max_age=LOGIN_TOKEN_TTL_S)
    except BadSignature:
        return False
    return isinstance(token, str) and hmac.compare_digest(token.encode(), sent.encode())


def _set(
    request: Request, response: Response, name: str, value: str, max_age: int, path: str
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        httponly=True,
        samesite="strict",
        # Secure wherever the page came over HTTPS; on plain HTTP (a laptop, loopback) a
        # secure cookie would never come back.
        secure=request.url.scheme == "https",
    )
