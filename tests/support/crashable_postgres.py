"""An embedded Postgres of a test's own, which the test can crash and start again on the
same data (what `pg_ctl stop -m immediate` does: no checkpoint, every connection cut)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

from app.store.embedded import start_embedded_postgres
from app.store.migrate import apply_migrations
from tests.support.waiting import wait_for


class Postgres:
    """An embedded Postgres that can be crashed and started again on the same data."""

    def __init__(self, data_dir: Path) -> None:
        self.url, self.server = start_embedded_postgres(data_dir, cleanup="delete")

    def crash(self) -> None:
        pid = self.server.get_pid()
        os.kill(pid, signal.SIGQUIT)  # what `pg_ctl stop -m immediate` sends
        wait_for(lambda: not _alive(pid), timeout_s=30, what="postgres to stop")

    def start(self) -> None:
        self.server.ensure_postgres_running()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.contextmanager
def crashable_postgres() -> Iterator[Postgres]:
    """A migrated embedded Postgres in a temporary directory, removed afterwards."""
    # Not under pytest's tmp_path: the embedded server runs as another user, and pytest
    # takes other users' access away from its temporary directories.
    with tempfile.TemporaryDirectory(prefix="ferry-crash-") as tmp:
        server = Postgres(Path(tmp) / "pgdata")
        try:
            asyncio.run(apply_migrations(server.url))
            yield server
        finally:
            server.server.cleanup()
