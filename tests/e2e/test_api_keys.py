"""API keys kept in the database, through the real command line (`python -m app keys`) and
two real API processes on one database: made, listed, used, rotated, revoked and expired,
with revocation holding from the next request in both processes, and the per-key limits.

These tests have a database of their own: a key in the suite's database would close every
other test's open API.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import psycopg
import pytest
from psycopg.rows import dict_row

from app.config import Settings
from tests.support.clients import sdk_client
from tests.support.database import migrated_scratch_database
from tests.support.processes import (
    STARTUP_TIMEOUT_S,
    Command,
    command_env,
    run_command,
    running_api_process,
)
from tests.support.servers import running_api
from tests.support.sockets import create as create_message
from tests.support.sockets import raw_socket, read_turn
from tests.support.waiting import wait_for

ENV_KEY = "env-key-7c1d9e"


@dataclass(frozen=True)
class Ran:
    code: int
    stdout: str
    stderr: str


def ferry_keys(database_url: str, *args: str) -> Ran:
    """Run `python -m app keys <args>` to its end."""
    env = command_env(DATABASE_URL=database_url)
    with run_command("-m", "app", "keys", *args, env=env) as command:
        code = command.wait_exit(STARTUP_TIMEOUT_S)
    return Ran(code, command.output("stdout"), command.output("stderr"))


def create_key(database_url: str, name: str, *options: str) -> str:
    ran = ferry_keys(database_url, "create", "--name", name, *options)
    assert ran.code == 0, ran
    key = ran.stdout.strip()
    assert key.startswith("sk-") and "\n" not in key, ran
    assert key not in ran.stderr
    assert key[:11] in ran.stderr  # the prefix names it
    return key


def listed(database_url: str) -> list[dict[str, Any]]:
    ran = ferry_keys(database_url, "list", "--json")
    assert ran.code == 0, ran
    entries: list[dict[str, Any]] = json.loads(ran.stdout)
    return entries


def status_with(base_url: str, key: str | None, path: str = "/v1/responses/resp_none") -> int:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{base_url}{path}", headers=headers, timeout=30).status_code


def refusal(base_url: str, key: str) -> dict[str, Any]:
    reply = httpx.get(
        f"{base_url}/v1/responses/resp_none",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert reply.status_code == 401, reply.text
    error: dict[str, Any] = reply.json()["error"]
    return error


def seconds_into_minute(keys_db: psycopg.Connection[dict[str, Any]]) -> float:
    row = keys_db.execute("SELECT extract(second FROM now())::float8 AS s").fetchone()
    assert row is not None
    return float(row["s"])


@pytest.fixture(scope="module")
def keys_database(postgres_admin_url: str) -> Iterator[str]:
    with migrated_scratch_database(postgres_admin_url) as url:
        yield url


@pytest.fixture(scope="module")
def two_apis(keys_database: str, upstream_url: str) -> Iterator[tuple[str, str, Command, Command]]:
    """Two API processes on the keys database, with a key in API_KEYS as well."""
    env = command_env(DATABASE_URL=keys_database, UPSTREAM_BASE_URL=upstream_url, API_KEYS=ENV_KEY)
    with (
        running_api_process(env, "--no-migrate") as (first, first_url),
        running_api_process(env, "--no-migrate") as (second, second_url),
    ):
        yield first_url, second_url, first, second


@pytest.fixture
def keys_db(keys_database: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    with psycopg.connect(keys_database, autocommit=True, row_factory=dict_row) as conn:
        yield conn


def test_key_lifecycle_across_two_api_processes(
    keys_database: str,
    two_apis: tuple[str, str, Command, Command],
    keys_db: psycopg.Connection[dict[str, Any]],
) -> None:
    first, second, first_process, second_process = two_apis
    alice = create_key(keys_database, "alice")
    bob = create_key(keys_database, "bob")

    # Only a digest is kept: the key is nowhere in its row, and the listing never shows it.
    row = keys_db.execute(
        "SELECT row_to_json(k)::text AS whole FROM api_keys k WHERE name = 'alice'"
    ).fetchone()
    assert row is not None and alice not in row["whole"] and alice[11:] not in row["whole"]
    listing = ferry_keys(keys_database, "list")
    assert listing.code == 0 and "alice" in listing.stdout and alice[:11] in listing.stdout
    assert alice not in listing.stdout and alice[11:] not in listing.stdout

    # A response made through one process is its owner's through the other.
    with sdk_client(first, alice) as alice_on_first, sdk_client(second, alice) as alice_on_second:
        made = alice_on_first.responses.create(model="demo", input="keys in the database")
        assert made.output_text == "Hello! You said: keys in the database"
        assert alice_on_second.responses.retrieve(made.id).id == made.id
    # ... and no one else's, whatever kind of key they hold (and the other way round).
    for other in (bob, ENV_KEY):
        with sdk_client(second, other) as stranger, pytest.raises(openai.NotFoundError):
            stranger.responses.retrieve(made.id)
    with sdk_client(first, ENV_KEY) as env_client:
        env_made = env_client.responses.create(model="demo", input="from API_KEYS")
    with sdk_client(second, alice) as alice_client, pytest.raises(openai.NotFoundError):
        alice_client.responses.retrieve(env_made.id)

    # A rotation: a second key of the same name sees the same responses.
    rotated = create_key(keys_database, "alice")
    with sdk_client(second, rotated) as rotated_client:
        assert rotated_client.responses.retrieve(made.id).id == made.id

    # Revoked by its prefix: refused at the next request in both processes (which had it
    # in memory), while the other key of the name goes on.
    ran = ferry_keys(keys_database, "revoke", alice[:11])
    assert ran.code == 0, ran
    for api in (first, second):
        assert refusal(api, alice) == {
            "message": "This API key has been revoked.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
        assert status_with(api, rotated) == 404  # authenticated; no such response
    # Revoked by name: every key of it.
    assert ferry_keys(keys_database, "revoke", "alice").code == 0
    for api in (first, second):
        assert refusal(api, rotated)["code"] == "invalid_api_key"
        assert status_with(api, bob) == 404
        assert status_with(api, ENV_KEY) == 404
    nothing_left = ferry_keys(keys_database, "revoke", "alice")
    assert nothing_left.code == 1 and "no active key" in nothing_left.stderr

    # The listing: revocations, and the last use written lazily (off the request path).
    def alice_entries() -> list[dict[str, Any]] | None:
        entries = [e for e in listed(keys_database) if e["name"] == "alice"]
        return entries if all(e["last_used_at"] for e in entries) else None

    entries = wait_for(alice_entries, timeout_s=15, what="last use of alice's keys")
    assert [e["prefix"] for e in entries] == [alice[:11], rotated[:11]]
    assert all(e["revoked_at"] for e in entries)
    for process in (first_process, second_process):
        for key in (alice, rotated, bob, ENV_KEY):
            assert key not in process.output("stderr")


def test_expiry_and_a_change_made_by_hand(
    keys_database: str,
    two_apis: tuple[str, str, Command, Command],
    keys_db: psycopg.Connection[dict[str, Any]],
) -> None:
    first, second, _, _ = two_apis
    carol = create_key(keys_database, "carol", "--expires", "30")
    (entry,) = [e for e in listed(keys_database) if e["name"] == "carol"]
    row = keys_db.execute(
        "SELECT expires_at - created_at AS lifetime FROM api_keys WHERE name = 'carol'"
    ).fetchone()
    assert row is not None and row["lifetime"].days == 30 and entry["expires_at"]
    assert status_with(first, carol) == 404 and status_with(second, carol) == 404

    # Edited in SQL rather than with `ferry keys`: heard all the same (a trigger notifies).
    keys_db.execute(
        "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE name = 'carol'"
    )
    for api in (first, second):
        assert refusal(api, carol)["message"] == "This API key has expired."


def test_a_key_name_that_could_be_a_prefix_is_refused(keys_database: str) -> None:
    ran = ferry_keys(keys_database, "create", "--name", "sk-confusing")
    assert ran.code == 2 and "--name" in ran.stderr and "sk-" not in ran.stdout


def test_requests_per_minute_are_counted_across_processes(
    keys_database: str,
    two_apis: tuple[str, str, Command, Command],
    keys_db: psycopg.Connection[dict[str, Any]],
) -> None:
    first, second, _, _ = two_apis
    dave = create_key(keys_database, "dave", "--max-requests-per-minute", "2")
    # The window is a clock minute: start well inside one, so the three requests share it.
    wait_for(lambda: seconds_into_minute(keys_db) < 50, timeout_s=15, what="a fresh minute")
    assert status_with(first, dave) == 404
    assert status_with(second, dave) == 404
    reply = httpx.get(
        f"{first}/v1/responses/resp_none",
        headers={"Authorization": f"Bearer {dave}"},
        timeout=30,
    )
    assert reply.status_code == 429, reply.text
    assert reply.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(reply.headers["retry-after"]) <= 60
    # Other names are not held back.
    erin = create_key(keys_database, "erin")
    assert status_with(first, erin) == 404


def test_a_socket_is_held_to_its_key_turn_by_turn(
    keys_database: str,
    two_apis: tuple[str, str, Command, Command],
    keys_db: psycopg.Connection[dict[str, Any]],
) -> None:
    """Each `response.create` is a request of the key: counted against its rate, refused
    once the key is revoked, however long ago the socket was opened."""
    first, _, _, _ = two_apis
    grace = create_key(keys_database, "grace", "--max-requests-per-minute", "3")
    wait_for(lambda: seconds_into_minute(keys_db) < 45, timeout_s=20, what="a fresh minute")
    with raw_socket(first, grace) as socket:  # the handshake: one request
        socket.send(create_message(input="one"))  # two
        assert read_turn(socket)[-1]["type"] == "response.completed"
        socket.send(create_message(input="two"))  # three
        assert read_turn(socket)[-1]["type"] == "response.completed"
        socket.send(create_message(input="three"))
        [refused] = read_turn(socket)
        assert (refused["status"], refused["error"]["code"]) == (429, "rate_limit_exceeded")
        assert 1 <= int(refused["error"]["headers"]["retry-after"]) <= 60

    henry = create_key(keys_database, "henry")
    with raw_socket(first, henry) as socket:
        socket.send(create_message(input="before"))
        assert read_turn(socket)[-1]["type"] == "response.completed"
        assert ferry_keys(keys_database, "revoke", "henry").code == 0
        wait_for(lambda: status_with(first, henry) == 401, what="the revocation to be heard")
        socket.send(create_message(input="after"))
        [refused] = read_turn(socket)
        assert refused == {
            "type": "error",
            "status": 401,
            "error": {
                "type": "invalid_request_error",
                "code": "invalid_api_key",
                "message": "This API key has been revoked.",
                "param": None,
            },
        }
        assert socket.wait_closed() == 1008


def test_concurrent_responses_are_limited_per_key(
    keys_database: str, make_settings: Callable[..., Settings]
) -> None:
    """No worker runs on this database: a background response stays queued, in its place."""
    frank = create_key(keys_database, "frank", "--max-concurrent-responses", "2")
    with (
        running_api(make_settings(database_url=keys_database)) as api,
        sdk_client(api, frank) as client,
    ):
        body = {"model": "demo", "input": "wait", "background": True}
        headers = {"Authorization": f"Bearer {frank}"}

        def create(_: int) -> httpx.Response:
            return httpx.post(f"{api}/v1/responses", json=body, headers=headers, timeout=30)

        # Five at once, two places: the lock on the owner lets exactly two in.
        with ThreadPoolExecutor(max_workers=5) as pool:
            replies = list(pool.map(create, range(5)))
        statuses = sorted(reply.status_code for reply in replies)
        assert statuses == [200, 200, 429, 429, 429], [r.text for r in replies]
        refused = next(reply for reply in replies if reply.status_code == 429)
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        assert refused.headers["retry-after"] == "1"
        # An inline response counts too, and is refused before anything is written.
        with pytest.raises(openai.RateLimitError):
            client.responses.create(model="demo", input="inline")
        # A place comes back when a response ends.
        queued = [reply.json()["id"] for reply in replies if reply.status_code == 200]
        client.responses.cancel(queued[0])
        again = client.responses.create(model="demo", input="inline now")
        assert again.status == "completed"
        client.responses.cancel(queued[1])


def test_an_open_api_closes_when_the_first_key_is_made(
    postgres_admin_url: str, make_settings: Callable[..., Settings]
) -> None:
    with (
        migrated_scratch_database(postgres_admin_url) as url,
        running_api(make_settings(database_url=url)) as api,
    ):
        assert status_with(api, None) == 404  # open: anyone may ask
        key = create_key(url, "first")
        assert status_with(api, None) == 401
        assert status_with(api, "sk-made-up") == 401
        assert status_with(api, key) == 404
        # Revoking every key locks the API; it does not open it again.
        assert ferry_keys(url, "revoke", "first").code == 0
        assert status_with(api, None) == 401
        assert status_with(api, key) == 401
