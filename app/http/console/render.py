"""The console's pages: Jinja2 templates with autoescape on, so whatever a response holds
(prompts, outputs, tool arguments, error messages) shows as text, never as markup; and the
headers every page carries.

The pages load script and style from /console/static only, and the Content-Security-Policy
says so: were anything to slip past the escaping, a browser would still not run it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from app.shapes import Item, Usage

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # Pages show what responses hold: no cache keeps a copy.
    "Cache-Control": "no-store",
}
_EXCERPT_CHARS = 160


def when(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def seconds(value: float | None) -> str:
    """A span of time, as a person reads it."""
    if value is None:
        return "—"
    if value < 10:
        return f"{value:.2f} s"
    if value < 120:
        return f"{value:.0f} s"
    minutes = int(value // 60)
    if minutes < 120:
        return f"{minutes} min {int(value % 60)} s"
    return f"{minutes // 60} h {minutes % 60} min"


def since(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    return seconds(max((datetime.now(UTC) - moment).total_seconds(), 0.0))


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def compact(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def usage_text(usage: Usage | None) -> str:
    if not usage:
        return "—"
    parts = [
        f"in {usage.get('input_tokens', '?')}",
        f"out {usage.get('output_tokens', '?')}",
        f"total {usage.get('total_tokens', '?')}",
    ]
    reasoning = (usage.get("output_tokens_details") or {}).get("reasoning_tokens")
    cached = (usage.get("input_tokens_details") or {}).get("cached_tokens")
    if reasoning:
        parts.append(f"reasoning {reasoning}")
    if cached:
        parts.append(f"cached {cached}")
    return " · ".join(parts)


def excerpt(item: Item) -> str:
    """One line telling what an input or output item is."""
    kind = str(item.get("type", "message"))
    if kind == "message":
        text = " ".join(_part_text(part) for part in _parts(item.get("content")))
        said = f"{item.get('role', '?')}: {text}"
    elif kind in ("function_call", "mcp_call"):
        said = f"{kind} {item.get('name')}({item.get('arguments', '')})"
    elif kind == "function_call_output":
        said = f"{kind}: {compact(item.get('output'))}"
    elif kind == "reasoning":
        said = "reasoning: " + " ".join(_part_text(part) for part in item.get("content") or [])
    else:
        said = kind
    said = " ".join(said.split())
    return said if len(said) <= _EXCERPT_CHARS else said[: _EXCERPT_CHARS - 1] + "…"


def _parts(content: Any) -> list[Any]:
    if isinstance(content, str):
        return [{"text": content}]
    return content if isinstance(content, list) else []


def _part_text(part: Any) -> str:
    if not isinstance(part, dict):
        return ""
    if isinstance(part.get("text"), str):
        return str(part["text"])
    return f"[{part.get('type', '?')}]"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("app.http.console", "templates"),
        autoescape=True,  # every template, whatever its name: nothing is left unescaped
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=when,
        seconds=seconds,
        since=since,
        pretty=pretty,
        compact=compact,
        usage_text=usage_text,
        excerpt=excerpt,
    )
    return env


TEMPLATES = Jinja2Templates(env=_environment())


def page(
    request: Request, template: str, context: dict[str, Any], *, status_code: int = 200
) -> Response:
    return TEMPLATES.TemplateResponse(
        request, template, context, status_code=status_code, headers=SECURITY_HEADERS
    )
