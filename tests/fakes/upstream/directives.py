"""The ``[[...]]`` directives: how a test tells the fake upstream what to do.

A directive is written in the text of a user message; the fake strips it from the text it
echoes and acts on it (see the package docstring for the list).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

JSONObject = dict[str, Any]

_CALL_HEAD_RE = re.compile(r"\s*call:\s*[^\s\[\]{}]+\s*")
_DIRECTIVE_CLOSE_RE = re.compile(r"\s*\]\]")
_CALL_BODY_RE = re.compile(r"([^\s{]+)\s*(.*)", re.DOTALL)
_JSON_DECODER = json.JSONDecoder()

# Directives that take no argument and only switch something on: `[[mid-error]]` sets the
# field `mid_error`, and so on.
FLAGS = frozenset(
    {"cut", "empty", "mid-error", "no-usage", "anthropic-usage", "reasoning", "no-stream"}
)
# Where `[[think:STYLE]]` puts the model's reasoning: either delta field, or `<think>` tags
# at the start of the content.
THINK_STYLES = ("reasoning_content", "reasoning", "tags")


@dataclass
class Directives:
    """The ``[[...]]`` instructions found in a user message."""

    calls: list[tuple[str, JSONObject]] = field(default_factory=list)
    # Calls made again after every tool result: a model that never stops calling tools.
    then_calls: list[tuple[str, JSONObject]] = field(default_factory=list)
    status: int | None = None
    # Fail only requests that answer tool results: a model turn after tools ran.
    then_status: int | None = None
    # (N, CODE): fail the first N requests with the same visible text with HTTP CODE.
    fail_first: tuple[int, int] | None = None
    cut_first: int | None = None
    retry_after: str | None = None
    # The `message` and `code` of the error body sent with `status` or `fail-first`.
    error_message: str | None = None
    error_code: str | None = None
    cut: bool = False
    empty: bool = False
    mid_error: bool = False
    no_usage: bool = False
    anthropic_usage: bool = False
    reasoning: bool = False
    no_stream: bool = False
    think: str | None = None  # one of THINK_STYLES
    delay_ms: int = 0


def split_directives(text: str) -> tuple[str, list[str]]:
    """Split ``text`` into (visible text, whitespace collapsed; directive bodies in order)."""
    kept: list[str] = []
    bodies: list[str] = []
    pos = 0
    while (start := text.find("[[", pos)) != -1:
        end = _directive_end(text, start)
        if end is None:
            # An unclosed "[[" is ordinary text, not a directive.
            break
        kept.append(text[pos:start])
        bodies.append(text[start + 2 : end - 2].strip())
        pos = end
    kept.append(text[pos:])
    # Join with a space so "a[[cut]]b" reads as two words, then collapse.
    return " ".join(" ".join(kept).split()), bodies


def _directive_end(text: str, start: int) -> int | None:
    """Index just past the ``]]`` closing the directive opened at ``start``."""
    # Call arguments are JSON and may themselves contain "]]" (nested arrays), so for
    # those we let the JSON decoder find where the object ends.
    head = _CALL_HEAD_RE.match(text, start + 2)
    if head is not None and text.startswith("{", head.end()):
        try:
            _, args_end = _JSON_DECODER.raw_decode(text, head.end())
        except json.JSONDecodeError:
            pass
        else:
            close = _DIRECTIVE_CLOSE_RE.match(text, args_end)
            if close is not None:
                return close.end()
    close_at = text.find("]]", start + 2)
    return None if close_at == -1 else close_at + 2


def parse_directives(bodies: list[str]) -> Directives:
    """Interpret directive bodies (as returned by :func:`split_directives`)."""
    found = Directives()
    for body in bodies:
        name, _, arg = body.partition(":")
        match name.strip().lower():
            case "call":
                call = _parse_call(arg)
                if call is not None:
                    found.calls.append(call)
            case "then-call":
                call = _parse_call(arg)
                if call is not None:
                    found.then_calls.append(call)
            case "status":
                code = _parse_int(arg)
                if code is not None and 400 <= code <= 599:
                    found.status = code
            case "then-status":
                code = _parse_int(arg)
                if code is not None and 400 <= code <= 599:
                    found.then_status = code
            case "cut-first":
                found.cut_first = _parse_int(arg)
            case "fail-first":
                found.fail_first = _parse_fail_first(arg) or found.fail_first
            case "retry-after":
                found.retry_after = _parse_seconds(arg) or found.retry_after
            case "think":
                style = arg.strip().lower() or THINK_STYLES[0]
                if style in THINK_STYLES:
                    found.think = style
            case "error-message":
                found.error_message = arg.strip() or found.error_message
            case "error-code":
                found.error_code = arg.strip() or found.error_code
            case "delay":
                delay = _parse_int(arg)
                if delay is not None and delay >= 0:
                    found.delay_ms = delay
            case flag if flag in FLAGS:
                setattr(found, flag.replace("-", "_"), True)
            case _:
                pass  # Unknown directives are only stripped from the text.
    return found


def _parse_call(arg: str) -> tuple[str, JSONObject] | None:
    match = _CALL_BODY_RE.fullmatch(arg.strip())
    if match is None:
        return None
    name, raw_args = match.group(1), match.group(2).strip()
    if not raw_args:
        return name, {}
    try:
        args = json.loads(raw_args)
    except json.JSONDecodeError:
        return None
    # Tool arguments are always a JSON object in the OpenAI API; anything else is a typo.
    return (name, args) if isinstance(args, dict) else None


def _parse_int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def _parse_fail_first(arg: str) -> tuple[int, int] | None:
    """``N`` or ``N:CODE`` as (N, CODE); None when malformed."""
    count_text, _, code_text = arg.partition(":")
    count = _parse_int(count_text)
    code = _parse_int(code_text) if code_text.strip() else 503
    if count is None or count < 0 or code is None or not 400 <= code <= 599:
        return None
    return count, code


def _parse_seconds(arg: str) -> str | None:
    """A non-negative number of seconds, kept as written so it is sent back verbatim."""
    text = arg.strip()
    try:
        seconds = float(text)
    except ValueError:
        return None
    return text if 0 <= seconds < float("inf") else None
