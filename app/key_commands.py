"""`ferry keys create | list | revoke`: API keys kept in the database.

    ferry keys create --name alice [--expires 90] [--max-concurrent-responses 4]
                      [--max-requests-per-minute 60] [--admin]
    ferry keys list [--json]
    ferry keys revoke alice | sk-Ab3dEf9h

`create` prints the new key on stdout, once; only its digest is stored. A change takes
effect on the next request in every API process (see app/engine/key_book.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import psycopg

from app.config import Settings
from app.engine.api_keys import check_name, new_key, new_key_id, owner_of_name
from app.engine.errors import RequestError
from app.store.api_keys import KeyStore, NewKey, StoredKey
from app.store.db import create_pool

# Exit statuses: 2 for a command line that cannot be right, 1 for one that failed.
USAGE_EXIT = 2
FAILED_EXIT = 1


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a whole number above 0")
    return value


def _positive_days(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a number of days above 0")
    return value


def add_arguments(
    parser: argparse.ArgumentParser, add_settings: Callable[[argparse.ArgumentParser], None]
) -> None:
    """The actions, each with the setting options (after the action: `keys list --json
    --database-url …`)."""
    actions = parser.add_subparsers(dest="keys_action", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create",
        help="make a key and print it, once",
        description="Make a key and print it on stdout, once: only its digest is stored.",
    )
    create.add_argument(
        "--name",
        required=True,
        help="who the key is for; keys of one name see the same responses (a rotation keeps "
        "them), and `revoke NAME` revokes them all",
    )
    create.add_argument(
        "--expires", type=_positive_days, metavar="DAYS", help="the key stops working after DAYS"
    )
    create.add_argument(
        "--max-concurrent-responses",
        type=_positive_int,
        metavar="N",
        help="most queued and running responses of the key's name at once; then 429",
    )
    create.add_argument(
        "--max-requests-per-minute",
        type=_positive_int,
        metavar="N",
        help="most requests of the key's name in a clock minute; then 429",
    )
    create.add_argument(
        "--admin",
        action="store_true",
        help="the key also opens the operator console (/console), as ADMIN_API_KEYS do",
    )
    listing = actions.add_parser(
        "list", help="the keys, never their secrets", description="List the keys (never a key)."
    )
    listing.add_argument("--json", action="store_true", help="one JSON array, for scripts")
    revoke = actions.add_parser(
        "revoke",
        help="revoke keys by name or prefix",
        description="Revoke every active key of a name, or the one key with a prefix; it is "
        "refused from the next request on, in every API process.",
    )
    revoke.add_argument("target", metavar="NAME|PREFIX", help="a key name, or a key prefix (sk-…)")
    for action in (create, listing, revoke):
        add_settings(action)


def run(args: argparse.Namespace, settings: Settings) -> int:
    actions: dict[str, Callable[[KeyStore, argparse.Namespace], Awaitable[int]]] = {
        "create": _create,
        "list": _list,
        "revoke": _revoke,
    }
    try:
        return asyncio.run(_with_store(settings, args, actions[args.keys_action]))
    except RequestError as exc:
        return _fail(f"--{exc.param}: {exc.message}" if exc.param else exc.message, USAGE_EXIT)
    except psycopg.errors.UndefinedTable:
        return _fail("the database has no API keys table: run the migrate command first")
    except psycopg.OperationalError as exc:
        return _fail(f"cannot reach the database: {str(exc).strip().splitlines()[0]}")


async def _with_store(
    settings: Settings,
    args: argparse.Namespace,
    action: Callable[[KeyStore, argparse.Namespace], Awaitable[int]],
) -> int:
    pool = create_pool(settings, name="ferry-keys")
    await pool.open(wait=True)
    try:
        return await action(KeyStore(pool), args)
    finally:
        await pool.close()


async def _create(store: KeyStore, args: argparse.Namespace) -> int:
    name = check_name(args.name)
    others = await store.active_named(name)
    material = new_key()
    stored = await store.insert(
        NewKey(
            id=new_key_id(),
            name=name,
            owner=owner_of_name(name),
            prefix=material.prefix,
            digest=material.digest,
            expires_in_days=args.expires,
            max_concurrent_responses=args.max_concurrent_responses,
            max_requests_per_minute=args.max_requests_per_minute,
            admin=args.admin,
        )
    )
    kind = "admin key" if stored.admin else "key"
    note = f"Created {kind} {stored.prefix}… named {name!r}"
    if stored.expires_at is not None:
        note += f", expiring {_when(stored.expires_at)}"
    print(f"{note}. It is shown this once: keep it now.", file=sys.stderr)
    if others:
        print(
            f"{len(others)} other active key(s) named {name!r} see the same responses.",
            file=sys.stderr,
        )
    print(material.key, flush=True)
    return 0


async def _list(store: KeyStore, args: argparse.Namespace) -> int:
    keys = await store.all()
    if args.json:
        print(json.dumps([_as_json(key) for key in keys], indent=2))
        return 0
    header = ("NAME", "PREFIX", "CREATED", "LAST USED", "EXPIRES", "REVOKED", "LIMITS", "ADMIN")
    rows = [header, *(_as_row(key) for key in keys)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
    return 0


async def _revoke(store: KeyStore, args: argparse.Namespace) -> int:
    revoked = await store.revoke(args.target)
    if not revoked:
        return _fail(f"no active key has the name or prefix {args.target!r}")
    for key in revoked:
        print(f"Revoked key {key.prefix}… named {key.name!r}.", file=sys.stderr)
    return 0


def _as_json(key: StoredKey) -> dict[str, Any]:
    return {
        "name": key.name,
        "prefix": key.prefix,
        "created_at": key.created_at.isoformat(),
        "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None,
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
        "max_concurrent_responses": key.max_concurrent_responses,
        "max_requests_per_minute": key.max_requests_per_minute,
        "admin": key.admin,
    }


def _as_row(key: StoredKey) -> tuple[str, ...]:
    limits = [
        f"{key.max_concurrent_responses} running" if key.max_concurrent_responses else "",
        f"{key.max_requests_per_minute}/min" if key.max_requests_per_minute else "",
    ]
    return (
        key.name,
        key.prefix,
        _when(key.created_at),
        _when(key.last_used_at),
        _when(key.expires_at),
        _when(key.revoked_at),
        ", ".join(limit for limit in limits if limit) or "-",
        "yes" if key.admin else "-",
    )


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if moment else "-"


def _fail(message: str, status: int = FAILED_EXIT) -> int:
    print(f"keys: {message}", file=sys.stderr)
    return status
