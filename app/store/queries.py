"""Loads a `.sql` file of named queries (`-- name: x`) into a mapping of name to SQL text.

`{{name}}` placeholders are filled in from `app.statuses.SQL_CONSTANTS`: the lists of
statuses live in Python once, not copied into every query.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, LiteralString

from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row

from app.statuses import SQL_CONSTANTS

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def _fill(sql: str) -> str:
    # A name that is not a constant raises KeyError at import: a typo never reaches a query.
    return _PLACEHOLDER.sub(lambda match: SQL_CONSTANTS[match.group(1)], sql)


def load_queries(path: Path) -> dict[str, LiteralString]:
    """The queries of a file of ours, by name.

    `LiteralString` is what psycopg asks of a query's text: these are ours, not built from
    input. (mypy checks `LiteralString` as plain `str`, so it takes the loaded text as is.)
    """
    text = path.read_text(encoding="utf-8")
    pieces = _NAME.split(text)
    # pieces: [preamble, name1, body1, name2, body2, ...]
    return {
        name: _fill(body.strip().rstrip(";"))
        for name, body in zip(pieces[1::2], pieces[2::2], strict=True)
    }


async def fetch_rows(
    conn: AsyncConnection, sql: LiteralString, params: Mapping[str, Any]
) -> list[DictRow]:
    """Run one of our queries: its rows as dicts, none for a statement that returns none.

    The connection may come from elsewhere (another store's transaction, procrastinate):
    dicts are asked for here.
    """
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql, params)
        return await cur.fetchall() if cur.description is not None else []


async def fetch_one(
    conn: AsyncConnection, sql: LiteralString, params: Mapping[str, Any]
) -> DictRow | None:
    """The first row of one of our queries, if any."""
    rows = await fetch_rows(conn, sql, params)
    return rows[0] if rows else None


QUERIES = load_queries(Path(__file__).with_name("queries.sql"))
