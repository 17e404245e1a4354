"""What the harnesses under bench/ share: a Postgres of their own, Ferry's processes started
as a supervisor would start them, free loopback ports and bounded waits.

Nothing here needs pytest: the harnesses run from a plain install (`scripts/bench`), and the
test suite reuses these pieces rather than keeping copies of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg

from app.store.embedded import start_embedded_postgres
from app.store.migrate import apply_migrations

ROOT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_S = 60.0


def free_port() -> int:
    """A loopback port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(ready: Callable[[], Any], timeout_s: float, what: str) -> None:
    """Call `ready` until it returns something truthy; raise after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} was not ready within {timeout_s}s")
        time.sleep(0.05)  # another process is starting; nothing to wait on but the clock


@contextlib.contextmanager
def scratch_database(admin_url: str, prefix: str = "ferry_test") -> Iterator[str]:
    """A new empty database on the server at `admin_url`, dropped afterwards."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield psycopg.conninfo.make_conninfo(admin_url, dbname=name)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def own_database(workdir: Path, admin_url: str | None = None) -> Iterator[str]:
    """A migrated database for one run: a scratch database on the server at `admin_url`, or
    (without one) an embedded Postgres whose data lives in `workdir`; gone afterwards."""
    if admin_url:
        with scratch_database(admin_url, prefix="ferry_bench") as url:
            asyncio.run(apply_migrations(url))
            yield url
        return
    url, postgres = start_embedded_postgres(workdir / "pgdata", cleanup="delete")
    try:
        asyncio.run(apply_migrations(url))
        yield url
    finally:
        postgres.cleanup()


@dataclass
class Process:
    """A Python process (`python <args>`) in a session of its own, its output in `log`.

    Ready when `ready_url` answers below 500, or when `ready_line` shows in its log."""

    args: list[str]
    env: dict[str, str]
    log: Path
    ready_url: str | None = None
    ready_line: str | None = None
    popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None, "not started"
        return self.popen.pid

    def launch(self) -> None:
        """Start it and return at once (see `wait_ready`)."""
        with self.log.open("ab") as log:
            self.popen = subprocess.Popen(
                [sys.executable, *self.args],
                env=self.env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # a Ctrl-C in the terminal reaches the harness only
            )

    def wait_ready(self, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        wait_until(self._ready, timeout_s, " ".join(self.args))

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def _ready(self) -> bool:
        if self.popen is not None and self.popen.poll() is not None:
            raise RuntimeError(f"{' '.join(self.args)} exited:\n{self.log_tail()}")
        if self.ready_url is not None:
            try:
                return httpx.get(self.ready_url, timeout=1).status_code < 500
            except httpx.HTTPError:
                return False
        if self.ready_line is not None:
            return self.ready_line in self.log.read_text(errors="replace")
        return True

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def ferry_env(database_url: str, upstream_base_url: str, **settings: str) -> dict[str, str]:
    """The environment of a Ferry process: this one's, minus settings a developer's shell may
    hold, plus the database, the upstream and `settings`."""
    env = dict(os.environ)
    for name in ("UPSTREAM_API_KEY", "API_KEYS", "PORT", "TOOLS_FILE", "MCP_ALLOWED_URLS"):
        env.pop(name, None)
    return env | {"DATABASE_URL": database_url, "UPSTREAM_BASE_URL": upstream_base_url} | settings


def api_process(env: dict[str, str], log: Path) -> tuple[Process, str]:
    """An API (`python -m app serve`) on a free port, not yet started, and its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["-m", "app", "serve", "--no-migrate", "--port", str(port)]
    return Process(args, env, log, ready_url=f"{url}/health"), url


def worker_process(env: dict[str, str], log: Path, *args: str) -> Process:
    """A worker (`python -m worker`), not yet started; ready once it says so."""
    return Process(["-m", "worker", *args], env, log, ready_line='"worker ready"')
