"""Real processes for the tests: started in their own process group, output collected by
reader threads, and the whole group killed afterwards, so no test leaves a process behind."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from bench.cluster import free_port
from tests.support import PROJECT_ROOT

STARTUP_TIMEOUT_S = 30.0
GROUP_EMPTY_TIMEOUT_S = 5.0


def port_is_bindable(port: int) -> bool:
    """Whether a server could listen on `port` now (as uvicorn would: with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2.0).close()
    except ConnectionRefusedError:
        return True
    except OSError:  # e.g. a timeout: not a refusal
        return False
    return False


def group_members(pgid: int) -> dict[int, str]:
    """Live (non-zombie) processes in process group `pgid`: pid -> command line."""
    members: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # exited while we looked
            continue
        # Fields after "(comm)": state ppid pgrp ...; comm itself may contain spaces.
        state, _ppid, pgrp = stat.rpartition(")")[2].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            members[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace")
    return members


def wait_for_group_to_empty(pgid: int) -> dict[int, str]:
    """Poll (bounded) until nothing is left in the group; return what is left, if anything."""
    deadline = time.monotonic() + GROUP_EMPTY_TIMEOUT_S
    while (left := group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.1)  # processes in another session are exiting; nothing to wait on
    return left


class Command:
    """A running command whose stdout and stderr lines are collected as they arrive."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._queues: dict[str, queue.Queue[str | None]] = {
            "stdout": queue.Queue(),
            "stderr": queue.Queue(),
        }
        self.readers = [
            threading.Thread(target=self._read, args=(name, pipe), daemon=True)
            for name, pipe in (("stdout", popen.stdout), ("stderr", popen.stderr))
        ]
        for reader in self.readers:
            reader.start()

    def _read(self, name: str, pipe: IO[bytes] | None) -> None:
        assert pipe is not None
        try:
            for raw in iter(pipe.readline, b""):
                line = raw.decode(errors="replace").rstrip("\n")
                self.lines[name].append(line)
                self._queues[name].put(line)
        except ValueError:  # the pipe was closed under us during cleanup
            pass
        finally:
            self._queues[name].put(None)  # end of output

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self, stream: str = "stderr") -> str:
        return "\n".join(self.lines[stream])

    def describe(self) -> str:
        return (
            f"exit code: {self.popen.poll()}\n--- stdout ---\n{self.output('stdout')}\n"
            f"--- stderr ---\n{self.output('stderr')}"
        )

    def wait_for_line(self, pattern: str, *, timeout: float, stream: str = "stderr") -> str:
        """The next line of `stream` that matches `pattern`; fail after `timeout` seconds."""
        lines = self._queues[stream]
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"no line matching {pattern!r} within {timeout}s\n{self.describe()}")
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                lines.put(None)  # keep the end marker for later waits
                pytest.fail(
                    f"{stream} ended without a line matching {pattern!r}\n{self.describe()}"
                )
            if re.search(pattern, line):
                return line

    def wait_exit(self, timeout: float) -> int:
        try:
            code = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {timeout}s later\n{self.describe()}")
        # Output written just before exiting: let the readers drain it (bounded).
        for reader in self.readers:
            reader.join(timeout=5.0)
        return code

    def records(self) -> list[dict[str, Any]]:
        """The JSON log records on stderr (stderr is a pipe, so logs are one JSON a line)."""
        records = []
        for line in self.lines["stderr"]:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    records.append(record)
        return records

    def messages(self) -> list[str]:
        return [str(record.get("msg")) for record in self.records()]


@contextlib.contextmanager
def run_command(*args: str, env: dict[str, str], cwd: Path = PROJECT_ROOT) -> Iterator[Command]:
    """Start `python <args>` in its own process group; kill whatever is left of it afterwards."""
    popen = subprocess.Popen(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its children join its group: one kill reaches them all
    )
    command = Command(popen)
    try:
        yield command
    finally:
        # The group id is the leader's pid; it stays reserved while any member lives.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=10.0)
        for reader in command.readers:
            reader.join(timeout=5.0)
        for pipe in (popen.stdout, popen.stderr):
            if pipe is not None:
                pipe.close()


def command_env(**overrides: str | None) -> dict[str, str]:
    """os.environ with overrides; None removes a variable."""
    env = dict(os.environ)
    # Settings the developer's shell may hold that would change what the commands do.
    for name in ("DATABASE_URL", "UPSTREAM_BASE_URL", "UPSTREAM_API_KEY", "API_KEYS", "PORT"):
        env.pop(name, None)
    env["LOG_LEVEL"] = "INFO"
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def wait_until_healthy(command: Command, base_url: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if command.popen.poll() is not None:
            pytest.fail(f"exited before it was ready\n{command.describe()}")
        try:
            if httpx.get(f"{base_url}/health", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)  # polling a process that is starting up; nothing to wait on instead
    pytest.fail(f"not healthy within {STARTUP_TIMEOUT_S}s\n{command.describe()}")


@contextlib.contextmanager
def running_worker(env: dict[str, str], *, concurrency: int) -> Iterator[Command]:
    """A worker process (`python -m worker`), once it has said it is ready."""
    with run_command("-m", "worker", "--concurrency", str(concurrency), env=env) as worker:
        worker.wait_for_line(r'"worker ready"', timeout=STARTUP_TIMEOUT_S)
        yield worker


@contextlib.contextmanager
def running_api_process(
    env: dict[str, str], *flags: str, port: int | None = None
) -> Iterator[tuple[Command, str]]:
    """An API as a process of its own (`python -m app serve <flags>`) on `port` (by default
    a free one): the command and its base URL, once it answers on /health."""
    port = port or free_port()
    with run_command("-m", "app", "serve", "--port", str(port), *flags, env=env) as api:
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(api, url)
        yield api, url
