"""The real commands as subprocesses: `python -m app migrate | serve | dev`, `python -m worker`.

Each process runs in a session of its own, with its output read by threads; whatever happens,
the whole process group is killed afterwards, so no test leaves a process behind.
"""

from __future__ import annotations

import json
import os
import re
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from app.config import DEMO_UPSTREAM_PORT
from tests.support import PROJECT_ROOT
from tests.support.database import EXPECTED_MIGRATIONS, applied_migrations, scratch_database
from tests.support.processes import (
    STARTUP_TIMEOUT_S,
    Command,
    command_env,
    free_port,
    group_members,
    port_is_bindable,
    refuses_connections,
    run_command,
    running_api_process,
    wait_for_group_to_empty,
)

EXIT_TIMEOUT_S = 20.0
# `dev` without DATABASE_URL runs initdb for its embedded Postgres first: that takes a while.
DEV_STARTUP_TIMEOUT_S = 120.0
DEV_EXIT_TIMEOUT_S = 60.0

UPSTREAM_SECRET = "sk-upstream-secret-123"
API_KEY = "ferry-test-key-k1-3f9a"
OPEN_API_WARNING = "API_KEYS is unset"

# Process groups and signal masks are read from /proc.
pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")


# --------------------------------------------------------------------------- harness


def output_text(body: dict[str, Any]) -> str:
    return "".join(
        part.get("text", "")
        for item in body.get("output", [])
        if item.get("type") == "message"
        for part in item.get("content", [])
        if part.get("type") == "output_text"
    )


def assert_says_hello(base_url: str, *, api_key: str | None = None) -> None:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    response = httpx.post(
        f"{base_url}/v1/responses",
        json={"model": "demo", "input": "hi"},
        headers=headers,
        timeout=30.0,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "completed", body
    assert output_text(body) == "Hello! You said: hi", body


# --------------------------------------------------------------------------- migrate


def run_migrate(url: str) -> list[str]:
    """Run `python -m app migrate` to completion; return the names it says it applied."""
    with run_command("-m", "app", "migrate", env=command_env(DATABASE_URL=url)) as command:
        code = command.wait_exit(STARTUP_TIMEOUT_S)
        assert code == 0, command.describe()
        done = [r for r in command.records() if r.get("msg") == "migrations up to date"]
        assert len(done) == 1, command.describe()
        return list(done[0]["applied_now"])


def test_migrate_applies_everything_once_then_nothing(
    postgres_admin_url: str, database_url: str
) -> None:
    with scratch_database(postgres_admin_url) as url:
        assert run_migrate(url) == EXPECTED_MIGRATIONS
        assert run_migrate(url) == []
        assert applied_migrations(url) == EXPECTED_MIGRATIONS
    # The suite's database is migrated already: nothing to do, nothing recorded twice.
    assert run_migrate(database_url) == []
    assert applied_migrations(database_url) == EXPECTED_MIGRATIONS


def test_migrate_without_database_url_is_a_usage_error() -> None:
    with run_command("-m", "app", "migrate", env=command_env()) as command:
        code = command.wait_exit(STARTUP_TIMEOUT_S)
    assert code == 2, command.describe()
    assert "DATABASE_URL is not set" in command.output(), command.describe()


# --------------------------------------------------------------------------- serve


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_answers_then_stops_cleanly_on_a_signal(
    database_url: str, upstream_url: str, signum: signal.Signals
) -> None:
    port = free_port()
    env = command_env(
        DATABASE_URL=database_url,
        UPSTREAM_BASE_URL=upstream_url,
        UPSTREAM_API_KEY=UPSTREAM_SECRET,
    )
    with running_api_process(env, "--no-migrate", port=port) as (api, base_url):
        assert_says_hello(base_url)

        api.popen.send_signal(signum)
        assert api.wait_exit(EXIT_TIMEOUT_S) == 0, api.describe()

    records = api.records()
    assert records, f"expected JSON log lines on stderr\n{api.describe()}"
    warnings = [r for r in records if r.get("level") == "warning" and OPEN_API_WARNING in r["msg"]]
    assert len(warnings) == 1, api.describe()
    assert "api ready" in api.messages(), api.describe()
    assert not [r for r in records if r.get("level") in ("error", "critical")], api.describe()
    assert "Traceback" not in api.output(), api.describe()
    for stream in ("stderr", "stdout"):
        assert UPSTREAM_SECRET not in api.output(stream), f"the upstream key leaked to {stream}"
    assert refuses_connections(port)


def test_serve_with_api_keys_requires_a_key(database_url: str, upstream_url: str) -> None:
    env = command_env(DATABASE_URL=database_url, UPSTREAM_BASE_URL=upstream_url, API_KEYS=API_KEY)
    with running_api_process(env, "--no-migrate") as (api, base_url):
        anonymous = httpx.post(
            f"{base_url}/v1/responses", json={"model": "demo", "input": "hi"}, timeout=30.0
        )
        assert anonymous.status_code == 401, anonymous.text
        assert anonymous.json()["error"]["code"] == "missing_api_key"
        assert_says_hello(base_url, api_key=API_KEY)

        api.popen.send_signal(signal.SIGTERM)
        assert api.wait_exit(EXIT_TIMEOUT_S) == 0, api.describe()

    assert not [m for m in api.messages() if OPEN_API_WARNING in m], api.describe()
    assert "API keys required" in api.messages(), api.describe()
    assert API_KEY not in api.output("stderr"), "an API key leaked to the logs"


def table_exists(url: str, name: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


def test_serve_migrates_unless_told_not_to(postgres_admin_url: str, upstream_url: str) -> None:
    with scratch_database(postgres_admin_url) as url:
        env = command_env(DATABASE_URL=url, UPSTREAM_BASE_URL=upstream_url)
        for flags in (["--no-migrate"], []):
            with running_api_process(env, *flags) as (api, _):
                if flags:
                    assert not table_exists(url, "ferry_migrations"), "migrated despite the flag"
                else:
                    assert applied_migrations(url) == EXPECTED_MIGRATIONS
                api.popen.send_signal(signal.SIGTERM)
                assert api.wait_exit(EXIT_TIMEOUT_S) == 0, api.describe()


# --------------------------------------------------------------------------- worker


def test_worker_starts_and_stops_on_sigterm(database_url: str) -> None:
    env = command_env(DATABASE_URL=database_url)
    with run_command("-m", "worker", "--concurrency", "2", env=env) as worker:
        ready = json.loads(worker.wait_for_line(r'"worker ready"', timeout=STARTUP_TIMEOUT_S))
        assert ready["concurrency"] == 2
        assert f":{worker.pid}:" in ready["worker"]  # worker:<host>:<pid>:<random>
        # SIGTERM straight after "ready": the handler is installed before it is said.
        worker.popen.send_signal(signal.SIGTERM)
        assert worker.wait_exit(EXIT_TIMEOUT_S) == 0, worker.describe()

    assert "worker stopped" in worker.messages(), worker.describe()
    assert "Traceback" not in worker.output(), worker.describe()


# --------------------------------------------------------------------------- dev


def wait_for_dev(dev: Command, port: int) -> str:
    line = dev.wait_for_line(r"Ferry is up at ", timeout=DEV_STARTUP_TIMEOUT_S, stream="stdout")
    match = re.search(r"Ferry is up at (http://\S+)", line)
    assert match, line
    assert match.group(1) == f"http://127.0.0.1:{port}", line
    return match.group(1)


def stop_leftover_postgres(pgdata: Path) -> None:
    """If a test failed with the embedded Postgres still up, stop it (it is in its own session)."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return
    if str(pgdata).encode() not in cmdline:
        return
    os.kill(pid, signal.SIGQUIT)  # immediate shutdown: it is a throwaway cluster
    deadline = time.monotonic() + 10.0
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # another session's process shutting down; nothing to wait on


@pytest.fixture
def dev_dir() -> Iterator[Path]:
    """Where `dev` runs (and keeps its embedded Postgres): not under pytest's temporary root.

    The embedded Postgres runs as another user, so pgserver opens the directories above its
    data to others; every pytest run that starts takes those permissions back from its own
    temporary root, which would lock a concurrent run's Postgres out of its data.
    """
    with tempfile.TemporaryDirectory(prefix="ferry-dev-") as path:
        yield Path(path)


@pytest.mark.parametrize(
    ("given_database", "given_upstream", "ctrl_c_to_group"),
    [
        # Nothing configured: what a first `python -m app dev` does. Ctrl-C as a terminal
        # sends it, to the whole foreground process group.
        pytest.param(False, False, True, id="from-nothing"),
        pytest.param(False, True, True, id="embedded-postgres"),
        # SIGINT to dev alone (`kill -INT`): dev must stop its children itself.
        pytest.param(True, False, False, id="demo-upstream"),
        pytest.param(True, True, False, id="database-and-upstream-given"),
    ],
)
def test_dev_starts_everything_and_stops_everything(
    request: pytest.FixtureRequest,
    dev_dir: Path,
    given_database: bool,
    given_upstream: bool,
    ctrl_c_to_group: bool,
) -> None:
    if not given_upstream and not port_is_bindable(DEMO_UPSTREAM_PORT):
        pytest.skip(f"port {DEMO_UPSTREAM_PORT}, where `dev` runs the demo upstream, is in use")
    port = free_port()
    pgdata = dev_dir / ".ferry" / "pgdata"
    env = command_env(
        DATABASE_URL=request.getfixturevalue("database_url") if given_database else None,
        UPSTREAM_BASE_URL=request.getfixturevalue("upstream_url") if given_upstream else None,
        # Imports resolve to this checkout from any working directory.
        PYTHONPATH=str(PROJECT_ROOT),
    )
    expected_children = sorted(
        [f"-m app serve --no-migrate --port {port}", "-m worker"]
        + ([] if given_upstream else [f"-m app.demo --port {DEMO_UPSTREAM_PORT}"])
    )
    try:
        with run_command("-m", "app", "dev", "--port", str(port), env=env, cwd=dev_dir) as dev:
            base_url = wait_for_dev(dev, port)
            assert_says_hello(base_url)

            children = group_members(dev.pid)
            children.pop(dev.pid, None)
            commands = sorted(" ".join(cmd.split()[1:]) for cmd in children.values())
            assert commands == expected_children, children
            if given_database:
                assert not (dev_dir / ".ferry").exists(), "embedded Postgres despite DATABASE_URL"
            else:
                assert (pgdata / "PG_VERSION").is_file()
                assert (pgdata / "postmaster.pid").is_file(), "the embedded Postgres is not up"
            if not given_upstream:
                assert not port_is_bindable(DEMO_UPSTREAM_PORT), "no demo upstream listening"

            if ctrl_c_to_group:
                os.killpg(dev.pid, signal.SIGINT)
            else:
                dev.popen.send_signal(signal.SIGINT)
            assert dev.wait_exit(DEV_EXIT_TIMEOUT_S) == 0, dev.describe()

            left = wait_for_group_to_empty(dev.pid)
            assert not left, f"left running after dev exited: {left}\n{dev.describe()}"
            assert refuses_connections(port), "the API still accepts connections"
            if not given_upstream:
                assert port_is_bindable(DEMO_UPSTREAM_PORT), "the demo upstream still listens"
            if not given_database:
                # Postgres runs in a session of its own: dev must have stopped it itself.
                assert not (pgdata / "postmaster.pid").exists(), "the embedded Postgres still runs"
        assert "Traceback" not in dev.output(), dev.describe()
    finally:
        stop_leftover_postgres(pgdata)
