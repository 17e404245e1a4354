"""Loads `queries.sql` into a mapping of query name to SQL text."""

from __future__ import annotations

import re
from pathlib import Path
from typing import LiteralString, cast

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def load_queries(path: Path) -> dict[str, LiteralString]:
    text = path.read_text(encoding="utf-8")
    pieces = _NAME.split(text)
    # pieces: [preamble, name1, body1, name2, body2, ...]
    return {
        name: cast(LiteralString, body.strip().rstrip(";"))
        for name, body in zip(pieces[1::2], pieces[2::2], strict=True)
    }


QUERIES = load_queries(Path(__file__).with_name("queries.sql"))
