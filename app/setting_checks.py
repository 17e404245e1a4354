"""Checks of setting values that pydantic's types do not make: URLs that parse as what they
name, networks, log levels, context sizes. Each returns the value (normalised) or raises
ValueError saying what is wrong, without repeating the value (it may hold a password)."""

from __future__ import annotations

import ipaddress
import logging
import re
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

#: Addresses whose X-Request-Id is honoured; `None` stands for any address (`*`).
Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_QUOTED = re.compile(r'"[^"]*"')


def database_url(value: str) -> str:
    """A libpq connection string (URL or `key=value` form), parsed as libpq will parse it."""
    try:
        parts = conninfo_to_dict(value)
    except psycopg.ProgrammingError as exc:
        raise ValueError(f"not a Postgres connection URL: {_libpq_reason(exc)}") from None
    for port in str(parts.get("port") or "").split(","):
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError("not a Postgres connection URL: the port is not a number 1-65535")
    return value


def _libpq_reason(exc: Exception) -> str:
    """libpq's reason, without the fragments of the string it quotes (which may be, or hold,
    the password), unless it names a query parameter."""
    reason = str(exc).strip().splitlines()[0]
    if reason.startswith("invalid URI query parameter"):
        return reason
    return _QUOTED.sub(lambda m: m.group(0) if len(m.group(0)) <= 3 else '"…"', reason)


def http_url(value: str) -> str:
    """An absolute http(s) URL with a host (and a numeric port, if any)."""
    try:
        parts = urlsplit(value.strip())
        _ = parts.port  # raises ValueError when it is not a number in range
    except ValueError:
        raise ValueError("not a URL: its port is not a number 0-65535") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http:// or https:// URL with a host")
    return value.strip()


def networks(entries: list[str]) -> Networks:
    """IP addresses and CIDR networks; `*` alone means any address."""
    if entries == ["*"]:
        return None
    found = []
    for entry in entries:
        try:
            found.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or network (or *)") from None
    return tuple(found)


def log_level(value: str) -> str:
    level = value.strip().upper()
    if level not in _LOG_LEVELS or not isinstance(logging.getLevelName(level), int):
        raise ValueError(f"not a log level: use one of {', '.join(_LOG_LEVELS)}")
    return level


def context_sizes(entries: list[str]) -> dict[str, int]:
    """`model=tokens` entries as a map; a model named twice keeps its last size."""
    sizes = {}
    for entry in entries:
        model, equals, tokens = entry.rpartition("=")
        tokens = tokens.strip()
        whole = tokens.isascii() and tokens.isdigit()
        if not equals or not model.strip() or not whole or int(tokens) < 1:
            raise ValueError(f"{entry!r} is not model=tokens (a whole number above 0)")
        sizes[model.strip()] = int(tokens)
    return sizes
