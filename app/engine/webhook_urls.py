"""Where webhooks may go: the operator's allow-list, and no private addresses (SSRF).

Ferry makes HTTP requests to URLs its clients choose, from inside the operator's network.
Two rules keep those requests from reaching what the client could not reach itself:

- the URL must start with one of the prefixes in WEBHOOK_ALLOWED_URLS; with none set, it
  must be `https`;
- every address its host resolves to must be public (not private, loopback, link-local,
  shared, reserved or multicast), unless the URL matches a prefix that names its host in
  full (`http://10.0.0.5:9000/`, up to the `/` after the host): the operator meant that
  host. A prefix that is only a scheme (`https://`) lifts nothing.

The address rule is checked when an endpoint is created or changed, and again before every
delivery, since DNS answers change; the delivery then connects to the address that was
checked (`Target`), so a second lookup cannot swap in another one.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

#: OpenAI's bound on an endpoint's URL.
MAX_URL_CHARS = 2048

#: A host name as DNS takes it (IDNA-encoded): labels of letters, digits, `-` and `_`.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
#: Looks a host up: the addresses it resolves to, as text.
Resolver = Callable[[str, int], Awaitable[list[str]]]


class UrlRefused(Exception):
    """A webhook URL Ferry will not send to; the message says why, for the client."""


@dataclass(frozen=True)
class Target:
    """Where one delivery goes: the URL as registered, sent to an address already checked."""

    url: httpx.URL  # the registered URL with its host replaced by `address`
    host_header: str  # the registered URL's host (and port), as the receiver expects it
    server_name: str  # the host name TLS verifies the certificate against


async def resolve_host(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback, however it is written
    return ip.is_global and not ip.is_multicast


def _parse(url: str) -> httpx.URL:
    """The URL as httpx will send it, if it is an http(s) URL with a plain host name or an
    address; UrlRefused if not."""
    try:
        parsed = httpx.URL(url)
        host = parsed.raw_host.decode("ascii")
    except (httpx.InvalidURL, ValueError):  # UnicodeError is a ValueError
        raise UrlRefused(f"'{url}' is not a valid URL.") from None
    if parsed.scheme not in ("http", "https") or not host:
        raise UrlRefused(f"'{url}' is not an http or https URL with a host.")
    if not (_HOST_NAME.fullmatch(host) or _is_address(host)):
        raise UrlRefused(f"'{url}' does not have a valid host name.")
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise UrlRefused(f"'{url}' has an invalid port.")
    return parsed


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _names_host(prefix: str) -> bool:
    """Whether a prefix names a whole host: `scheme://host[:port]/…`, not just a scheme or
    the start of a host name (`https://hooks.` would match `https://hooks.evil.example`)."""
    _, sep, rest = prefix.partition("://")
    return bool(sep) and "/" in rest and not rest.startswith("/")


class UrlPolicy:
    def __init__(self, allowed_prefixes: list[str], resolver: Resolver = resolve_host) -> None:
        self.allowed_prefixes = allowed_prefixes
        self.resolver = resolver

    def check_form(self, url: str) -> httpx.URL:
        """The rules that need no lookup: length, scheme, host, the allow-list; the URL
        parsed."""
        if len(url) > MAX_URL_CHARS:
            raise UrlRefused(f"The URL is longer than {MAX_URL_CHARS} characters.")
        parsed = _parse(url)
        if not self.allowed_prefixes:
            if parsed.scheme != "https":
                raise UrlRefused(
                    f"'{url}' is not allowed: webhook URLs must use https "
                    "(WEBHOOK_ALLOWED_URLS is empty)."
                )
        elif not any(url.startswith(prefix) for prefix in self.allowed_prefixes):
            raise UrlRefused(
                f"'{url}' is not allowed on this server: it matches none of the prefixes in "
                "WEBHOOK_ALLOWED_URLS."
            )
        return parsed

    def _private_allowed(self, url: str) -> bool:
        return any(url.startswith(p) and _names_host(p) for p in self.allowed_prefixes)

    async def target(self, url: str) -> Target:
        """Check `url` whole, lookup included, and where to send to; UrlRefused if not."""
        parsed = self.check_form(url)
        host = parsed.raw_host.decode("ascii")  # IDNA-encoded, as DNS and TLS take it
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            addresses = await self.resolver(host, port)
        except OSError as exc:
            raise UrlRefused(f"The host '{host}' could not be resolved ({exc}).") from None
        if not addresses:
            raise UrlRefused(f"The host '{host}' could not be resolved.")
        if not self._private_allowed(url):
            private = [address for address in addresses if not _is_public(address)]
            if private:
                raise UrlRefused(
                    f"'{url}' is not allowed: its host resolves to {private[0]}, a private, "
                    "loopback or otherwise non-public address. Allow it with a "
                    "WEBHOOK_ALLOWED_URLS prefix that names the host."
                )
        return Target(
            url=parsed.copy_with(host=addresses[0]),
            host_header=parsed.netloc.decode("ascii"),
            server_name=host,
        )
