"""Scratch Postgres databases for the tests that need one of their own."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator

import psycopg

# Where scratch databases are made: the local server unless told otherwise.
ADMIN_URL = os.environ.get(
    "TEST_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@contextlib.contextmanager
def scratch_database(admin_url: str) -> Iterator[str]:
    """A new empty database, dropped afterwards."""
    name = f"ferry_test_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield psycopg.conninfo.make_conninfo(admin_url, dbname=name)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
