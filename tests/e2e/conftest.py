"""Shared fixtures: a fresh Postgres database, the fake upstream, and Ferry's API, all real.

Postgres: TEST_DATABASE_URL when set (used as is); otherwise a fresh database on the
server at 127.0.0.1:5432 (or TEST_DATABASE_ADMIN_URL), dropped afterwards; when no server
answers there, an embedded Postgres in a temporary directory.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import psycopg
import pytest
from psycopg.rows import dict_row

from app.config import Settings
from app.store.embedded import start_embedded_postgres
from app.store.migrate import apply_migrations
from tests.fakes.upstream import create_app as create_fake_upstream
from tests.support.clients import sdk_client
from tests.support.database import ADMIN_URL, migrated_scratch_database
from tests.support.mcp_server import McpTestServer, run_mcp_server
from tests.support.processes import Command, command_env, running_api_process, running_worker
from tests.support.servers import running_api, serve
from tests.support.settings import SUITE_TUNING, as_environment
from tests.support.tool_server import ToolServer, tools_toml
from tests.support.webhook_receiver import WebhookReceiver


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A Postgres server we may create databases on: the local one, else an embedded one."""
    try:
        psycopg.connect(ADMIN_URL, connect_timeout=3).close()
    except psycopg.OperationalError:
        with tempfile.TemporaryDirectory(prefix="ferry-pg-") as tmp:
            url, handle = start_embedded_postgres(Path(tmp) / "pgdata", cleanup="delete")
            try:
                yield url
            finally:
                handle.cleanup()
        return
    yield ADMIN_URL


@pytest.fixture(scope="session")
def database_url(postgres_admin_url: str) -> Iterator[str]:
    """The suite's database, migrated: TEST_DATABASE_URL when set, else a scratch one."""
    if url := os.environ.get("TEST_DATABASE_URL"):
        asyncio.run(apply_migrations(url))
        yield url
        return
    with migrated_scratch_database(postgres_admin_url) as url:
        yield url


@pytest.fixture(scope="session")
def upstream_url() -> Iterator[str]:
    """Base URL of the fake upstream, as UPSTREAM_BASE_URL would be set."""
    with serve(create_fake_upstream(), ready_path="/models", lifespan="off") as url:
        yield f"{url}/v1"


@pytest.fixture(scope="session")
def tool_server() -> Iterator[ToolServer]:
    server = ToolServer()
    with serve(server.app(), ready_path="/tools/ping", lifespan="off", ready_status=405) as url:
        server.base_url = url
        yield server


@pytest.fixture(scope="session")
def tools_file(tool_server: ToolServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The registered server-side tools; every API and worker in the suite loads them."""
    os.environ["FERRY_TEST_TOOL_TOKEN"] = "tool-secret"  # referenced from the file
    path = tmp_path_factory.mktemp("tools") / "tools.toml"
    path.write_text(tools_toml(tool_server.base_url))
    return str(path)


@pytest.fixture(scope="session")
def mcp_server() -> Iterator[McpTestServer]:
    """A real MCP server (streamable HTTP); every API and worker may use it."""
    with run_mcp_server() as server:
        yield server


@pytest.fixture(scope="session")
def mcp_allowed(mcp_server: McpTestServer) -> str:
    """MCP_ALLOWED_URLS for the suite: the test MCP server only."""
    return mcp_server.url.rsplit("/", 1)[0] + "/"


@pytest.fixture(scope="session")
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A real webhook receiver on loopback; each test posts to its own path."""
    receiver = WebhookReceiver()
    with serve(receiver.app(), ready_path="/ready", lifespan="off") as url:
        receiver.base_url = url
        yield receiver


@pytest.fixture(scope="session")
def suite_settings(
    database_url: str,
    upstream_url: str,
    tools_file: str,
    mcp_allowed: str,
    webhook_receiver: WebhookReceiver,
) -> dict[str, Any]:
    """What every API and worker of the suite is configured with, in process or not."""
    return {
        "database_url": database_url,
        "upstream_base_url": upstream_url,
        "tools_file": tools_file,
        "mcp_allowed_urls": mcp_allowed,
        # The receiver is on loopback: a prefix naming its host lets webhooks reach it.
        "webhook_allowed_urls": f"{webhook_receiver.base_url}/hooks/",
        **SUITE_TUNING,
    }


@pytest.fixture(scope="session")
def make_settings(suite_settings: dict[str, Any]) -> Callable[..., Settings]:
    """Settings for an API in this process: the suite's, with `overrides`."""

    def make(**overrides: Any) -> Settings:
        return Settings(**{**suite_settings, **overrides})

    return make


@pytest.fixture(scope="session")
def api_url(make_settings: Callable[..., Settings]) -> Iterator[str]:
    """An open (no API keys) Ferry API."""
    with running_api(make_settings()) as url:
        yield url


@pytest.fixture(scope="session")
def client(api_url: str) -> Iterator[openai.OpenAI]:
    with sdk_client(api_url, timeout=30) as sdk:
        yield sdk


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture(scope="session")
def service_env(suite_settings: dict[str, Any]) -> dict[str, str]:
    """Environment for a Ferry process on the test database, fake upstream and tools."""
    return command_env(**as_environment(suite_settings))


@pytest.fixture(scope="session")
def worker(service_env: dict[str, str]) -> Iterator[Command]:
    """A real worker process (`python -m worker`) running background and flex jobs."""
    with running_worker(service_env, concurrency=4) as process:
        yield process


@pytest.fixture(scope="session")
def second_api_url(service_env: dict[str, str]) -> Iterator[str]:
    """Another API, as its own process (`python -m app serve`) on the same database."""
    with running_api_process(service_env, "--no-migrate") as (_, url):
        yield url


# Webhook tests each take keys of their own, so that one test's endpoints never hear of
# another test's responses (endpoints belong to the key that made them).
WEBHOOK_API_KEYS = [f"wk-{n}" for n in range(100)]


@pytest.fixture(scope="session")
def webhook_api_url(make_settings: Callable[..., Settings]) -> Iterator[str]:
    """An API that requires keys, one of WEBHOOK_API_KEYS."""
    with running_api(make_settings(api_keys=",".join(WEBHOOK_API_KEYS))) as url:
        yield url


@pytest.fixture(scope="session")
def webhook_keys() -> Iterator[str]:
    """The keys no webhook test has used yet, one at a time."""
    return iter(WEBHOOK_API_KEYS)


@pytest.fixture
def webhook_key(webhook_keys: Iterator[str]) -> str:
    """A key of the webhook API that no other test uses: an owner of its own."""
    return next(webhook_keys)


@pytest.fixture
def webhook_client(webhook_api_url: str, webhook_key: str) -> Iterator[openai.OpenAI]:
    with sdk_client(webhook_api_url, api_key=webhook_key, timeout=30) as sdk:
        yield sdk
