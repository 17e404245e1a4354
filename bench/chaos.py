"""Chaos: a mixed load on N API processes and M workers over one Postgres, while workers and
APIs are SIGKILLed at random moments and Postgres is crashed once; then a report.

    .venv/bin/python bench/chaos.py [--apis 2] [--workers 2] [--duration 30] [--seed 1]

Everything runs on this machine, on loopback: an embedded Postgres of its own (so that it
can be crashed: SIGQUIT to the postmaster, as `pg_ctl stop -m immediate` does), the bundled
demo upstream, a retry-safe HTTP tool that deduplicates by Idempotency-Key, and Ferry's
processes. The load mixes inline streams, background streams and tool-calling background
responses. When the load stops, every accepted response is waited for (bounded), and the
report says how many were accepted, completed and failed (with reasons), how many were
lost (must be 0), how many tool calls took effect twice (must be 0), and the longest time
from a fault to the next completed response. The exit code is 1 if anything was lost or
applied twice.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.store.embedded import start_embedded_postgres  # noqa: E402
from app.store.migrate import apply_migrations  # noqa: E402
from bench.cluster import Process, free_port, wait_until  # noqa: E402

ACTIVE = ("queued", "in_progress")
# Fast failure detection, so that a run of seconds sees every kind of recovery.
TUNING = {
    "WORKER_HEARTBEAT_S": "0.5",
    "STALL_THRESHOLD_S": "3",
    "RECOVERY_INTERVAL_S": "1",
    "INLINE_LEASE_S": "3",
    "DB_POOL_TIMEOUT_S": "2",
    "EVENT_FLUSH_INTERVAL_S": "0.02",
    "WORKER_SHUTDOWN_TIMEOUT_S": "1",
    "MAX_ATTEMPTS": "5",
    "LOG_LEVEL": "WARNING",
}


@dataclass
class Ledger:
    """A retry-safe tool: the effect happens once per Idempotency-Key. A call Ferry made
    twice with two keys would take effect twice: that is what the report counts."""

    keys_by_call: dict[tuple[str, int], set[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        async def post(request: Request) -> JSONResponse:
            arguments = json.loads(await request.body() or b"{}")
            call = (request.headers.get("x-ferry-response-id", ""), int(arguments.get("n", 0)))
            with self.lock:
                self.keys_by_call.setdefault(call, set()).add(request.headers["idempotency-key"])
            return JSONResponse({"booked": call[1]})

        return Starlette(routes=[Route("/ledger", post, methods=["POST"])])

    def applied_twice(self) -> int:
        with self.lock:
            return sum(len(keys) > 1 for keys in self.keys_by_call.values())


@contextlib.contextmanager
def serve_in_thread(app: Starlette) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 30, "the tool server")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@dataclass
class Cluster:
    postgres: Any
    apis: list[Process]
    workers: list[Process]
    faults: list[tuple[float, str]] = field(default_factory=list)

    def api_urls(self) -> list[str]:
        return [p.ready_url.rsplit("/", 1)[0] for p in self.apis if p.ready_url]

    def crash_postgres(self, down_s: float) -> None:
        pid = self.postgres.get_pid()
        self.faults.append((time.time(), "postgres crashed"))
        os.kill(pid, signal.SIGQUIT)  # what `pg_ctl stop -m immediate` sends
        time.sleep(down_s)  # the outage itself
        self.postgres.ensure_postgres_running()

    def kill_one(self, rng: random.Random) -> None:
        process = rng.choice(self.apis + self.workers)
        kind = "api" if process in self.apis else "worker"
        self.faults.append((time.time(), f"{kind} killed"))
        process.kill()
        process.start()  # a supervisor would restart it; an API on the same port


@dataclass
class Load:
    accepted: set[str] = field(default_factory=set)
    refused: Counter[str] = field(default_factory=Counter)  # by status or error


async def one_request(client: httpx.AsyncClient, url: str, kind: str, n: int, load: Load) -> None:
    text = f"chaos {n} {random.getrandbits(32):08x}"
    body: dict[str, Any] = {"model": "demo", "input": text}
    if kind == "tool":
        body = {"model": "demo", "input": f'{text}: book it with ledger {{"n": {n}}}'}
        body["background"] = True
    elif kind == "background":
        body |= {"background": True, "stream": True}
    else:
        body["stream"] = True
    try:
        if not body.get("stream"):
            reply = await client.post(f"{url}/v1/responses", json=body)
            if reply.status_code == 200:
                load.accepted.add(reply.json()["id"])
            else:
                load.refused[str(reply.status_code)] += 1
            return
        async with client.stream("POST", f"{url}/v1/responses", json=body) as reply:
            if reply.status_code != 200:
                load.refused[str(reply.status_code)] += 1
                return
            async for line in reply.aiter_lines():
                if line.startswith("data:") and '"response.created"' in line:
                    load.accepted.add(json.loads(line[5:])["response"]["id"])
    except httpx.HTTPError as exc:  # an API killed under the request: not accepted, or cut
        load.refused[type(exc).__name__] += 1


async def generate(cluster: Cluster, duration_s: float, seed: int, load: Load) -> None:
    rng = random.Random(seed)
    kinds = ["inline", "background", "tool"]
    deadline = time.monotonic() + duration_s
    in_flight: set[asyncio.Task[None]] = set()
    async with httpx.AsyncClient(timeout=httpx.Timeout(120, connect=5)) as client:
        n = 0
        while time.monotonic() < deadline:
            if len(in_flight) < 24:
                url = rng.choice(cluster.api_urls())
                task = asyncio.create_task(one_request(client, url, rng.choice(kinds), n, load))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                n += 1
            await asyncio.sleep(0.03)
        if in_flight:
            await asyncio.wait(in_flight, timeout=120)


def inject_faults(cluster: Cluster, duration_s: float, seed: int, kills: int) -> None:
    rng = random.Random(seed + 1)
    moments = sorted(rng.uniform(0.15, 0.85) * duration_s for _ in range(kills))
    crash_at = rng.uniform(0.3, 0.6) * duration_s
    plan = sorted([(t, "kill") for t in moments] + [(crash_at, "crash")])
    start = time.monotonic()
    for at, what in plan:
        time.sleep(max(0.0, at - (time.monotonic() - start)))  # the schedule is the clock
        if what == "crash":
            cluster.crash_postgres(down_s=2.0)
        else:
            cluster.kill_one(rng)


def settle(database_url: str, accepted: set[str], timeout_s: float) -> list[dict[str, Any]]:
    """The rows of the accepted responses once none is running (or at the deadline)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as db:
            rows = db.execute(
                "SELECT id, status, error, completed_at FROM responses WHERE id = ANY(%s)",
                (list(accepted),),
            ).fetchall()
        if all(r["status"] not in ACTIVE for r in rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)  # the workers are finishing; the database is the only witness


def report(cluster: Cluster, load: Load, rows: list[dict[str, Any]], ledger: Ledger) -> int:
    by_status = Counter(r["status"] for r in rows)
    reasons = Counter((r["error"] or {}).get("code", "?") for r in rows if r["status"] == "failed")
    lost = len(load.accepted) - len(rows) + sum(r["status"] in ACTIVE for r in rows)
    completions = sorted(r["completed_at"].timestamp() for r in rows if r["completed_at"])
    recoveries = [
        next((c for c in completions if c > at), float("inf")) - at for at, _ in cluster.faults
    ]
    twice = ledger.applied_twice()
    print(
        json.dumps(
            {
                "accepted": len(load.accepted),
                "completed": by_status["completed"],
                "failed": by_status["failed"],
                "failed_reasons": dict(reasons),
                "other_endings": {
                    k: v for k, v in by_status.items() if k not in ("completed", "failed")
                },
                "lost": lost,
                "tool_calls": len(ledger.keys_by_call),
                "duplicate_tool_effects": twice,
                # Requests refused (503 in the outage, 429) or cut by a killed API; a cut
                # stream whose response was accepted is still counted, and awaited, above.
                "client_errors": dict(load.refused),
                "faults": [what for _, what in cluster.faults],
                "longest_recovery_s": round(max(recoveries, default=0.0), 2),
            },
            indent=2,
        )
    )
    return 1 if lost or twice else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apis", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    parser.add_argument("--kills", type=int, default=4, help="processes SIGKILLed during it")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--settle", type=float, default=120.0, help="bound on the final wait")
    args = parser.parse_args(argv)

    ledger = Ledger()
    with (
        tempfile.TemporaryDirectory(prefix="ferry-chaos-") as tmp,
        serve_in_thread(ledger.app()) as tool_url,
    ):
        database_url, postgres = start_embedded_postgres(Path(tmp) / "pgdata", cleanup="delete")
        try:
            asyncio.run(apply_migrations(database_url))
            tools = Path(tmp) / "tools.toml"
            tools.write_text(f'[[tools]]\nname = "ledger"\nurl = "{tool_url}/ledger"\n')
            upstream_port = free_port()
            env = {
                **os.environ,
                **TUNING,
                "DATABASE_URL": database_url,
                "UPSTREAM_BASE_URL": f"http://127.0.0.1:{upstream_port}/v1",
                "TOOLS_FILE": str(tools),
            }
            log = Path(tmp) / "processes.log"
            upstream = Process(
                ["-m", "app.demo", "--port", str(upstream_port)],
                env,
                log,
                f"http://127.0.0.1:{upstream_port}/models",
            )
            apis = []
            for _ in range(args.apis):
                port = free_port()
                serve = ["-m", "app", "serve", "--no-migrate", "--port", str(port)]
                apis.append(Process(serve, env, log, f"http://127.0.0.1:{port}/health"))
            workers = [Process(["-m", "worker"], env, log) for _ in range(args.workers)]
            cluster = Cluster(postgres, apis, workers)
            everything = [upstream, *apis, *workers]
            try:
                for process in everything:
                    process.start()
                load = Load()
                chaos = threading.Thread(
                    target=inject_faults, args=(cluster, args.duration, args.seed, args.kills)
                )
                chaos.start()
                asyncio.run(generate(cluster, args.duration, args.seed, load))
                chaos.join()
                rows = settle(database_url, load.accepted, args.settle)
                return report(cluster, load, rows, ledger)
            finally:
                for process in reversed(everything):
                    process.stop()
        finally:
            postgres.cleanup()


if __name__ == "__main__":
    sys.exit(main())
