"""Real servers on loopback for the tests: uvicorn in a thread, on a pre-bound socket."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import httpx
import uvicorn
from starlette.types import ASGIApp

from app.config import Settings
from app.http.server import build_app

STARTUP_TIMEOUT_S = 30.0


@contextlib.contextmanager
def serve(
    app: ASGIApp, *, ready_path: str, lifespan: str = "on", ready_status: int = 200
) -> Iterator[str]:
    """Run `app` under uvicorn in a thread; yield its base URL.

    Binding and listening before uvicorn starts means the port is known up front and early
    connections queue in the backlog: the first request is the bounded readiness wait.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan=lifespan,
        log_config=None,
        timeout_graceful_shutdown=5,
        ws="wsproto",  # as `ferry serve` runs it
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        ready = httpx.get(f"{base_url}{ready_path}", timeout=STARTUP_TIMEOUT_S)
        assert ready.status_code == ready_status, ready.text
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=STARTUP_TIMEOUT_S)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not shut down"


@contextlib.contextmanager
def running_api(settings: Settings) -> Iterator[str]:
    """Ferry's API app with `settings`, served in this process; yield its base URL."""
    with serve(build_app(settings), ready_path="/health") as url:
        yield url
