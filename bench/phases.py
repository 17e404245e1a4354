"""The measurements, one function per figure (or pair of figures measured together).

Each one warms up first, then measures `plan.repetitions` rounds. Where a figure compares
two paths, every round runs both, alternating which goes first, so that a change in the
machine's load during the run falls on both sides of the ratio.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import httpx
import psycopg

from bench import procfs
from bench.figures import Figure, p50, ratio
from bench.lean_client import Connection
from bench.paths import (
    LEAN_CLIENT,
    READING_CLIENT,
    LeanCall,
    Outcome,
    bare_blocking,
    bare_stream,
    ferry_background_create,
    ferry_background_stream,
    ferry_blocking,
    ferry_stream,
    reading_bare,
    reading_ferry,
)
from bench.plan import WORKER_CONCURRENCY, Plan

T = TypeVar("T")
SETTLE_TIMEOUT_S = 600.0


class BenchError(Exception):
    """A measurement could not be made (a request failed where none may)."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True)
class Target:
    """What the measurements run against: the processes and the database of this run."""

    upstream: Endpoint
    api: Endpoint
    upstream_pid: int
    api_pid: int
    database_url: str
    plan: Plan


async def interleaved(
    repetitions: int, first: Callable[[], Awaitable[T]], second: Callable[[], Awaitable[T]]
) -> list[tuple[T, T]]:
    """(first, second) results per repetition, after one warm-up of each; the order in which
    the two run alternates from one repetition to the next."""
    await first()
    await second()
    pairs = []
    for n in range(repetitions):
        if n % 2 == 0:
            a = await first()
            b = await second()
        else:
            b = await second()
            a = await first()
        pairs.append((a, b))
    return pairs


def required(outcome: Outcome, what: str) -> Outcome:
    if not outcome.ok:
        raise BenchError(f"{what}: {outcome.kind}")
    return outcome


@dataclass
class Load:
    """What a closed loop got: how its requests went, by kind, and how long it took."""

    outcomes: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0

    @property
    def completed(self) -> int:
        return self.outcomes["ok"]

    @property
    def rate(self) -> float:
        return ratio(self.completed, self.elapsed_s)

    def failures(self) -> dict[str, int]:
        return {kind: n for kind, n in self.outcomes.items() if kind.startswith("failed")}


async def closed_loop(
    endpoint: Endpoint, call: LeanCall, words: int, connections: int, total: int
) -> Load:
    """`connections` clients, each sending its next request as soon as its last one ended,
    until `total` were sent; a client whose connection breaks counts a failure and opens
    another."""
    load = Load()
    left = total

    async def client() -> None:
        nonlocal left
        async with Connection(endpoint.host, endpoint.port) as conn:
            while left > 0:
                left -= 1
                try:
                    outcome = await call(conn, words)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    outcome = Outcome(f"failed: {type(exc).__name__}")
                    await conn.close()
                load.outcomes[outcome.kind] += 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(min(connections, total))))
    load.elapsed_s = time.perf_counter() - started
    return load


def reading_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(120.0, connect=10.0))


async def single_stream(target: Target) -> list[Figure]:
    """Tokens per second of one stream read whole, and the CPU the API and the upstream
    spent on it (from /proc, process trees, user + system)."""
    plan, words = target.plan, target.plan.long_words
    bare, ferry = reading_bare(target.upstream.url), reading_ferry(target.api.url)
    cpu: list[tuple[float, float]] = []  # (API, upstream) seconds per Ferry stream

    async with reading_client() as client:

        async def run_bare() -> float:
            outcome = required(await bare.stream(client, words), "bare stream")
            return words / outcome.total_s

        async def run_ferry() -> float:
            api_before = procfs.tree_cpu_s(target.api_pid)
            upstream_before = procfs.tree_cpu_s(target.upstream_pid)
            outcome = required(await ferry.stream(client, words), "Ferry stream")
            api_s = procfs.tree_cpu_s(target.api_pid) - api_before
            cpu.append((api_s, procfs.tree_cpu_s(target.upstream_pid) - upstream_before))
            return words / outcome.total_s

        pairs = await interleaved(plan.repetitions, run_bare, run_ferry)
    cpu = cpu[1:]  # the warm-up's
    lean = await interleaved(
        plan.repetitions,
        lambda: _lean_tokens_per_s(target.upstream, bare_stream, words),
        lambda: _lean_tokens_per_s(target.api, ferry_stream, words),
    )
    api_us = [api_s / words * 1e6 for api_s, _ in cpu]
    upstream_us = [upstream_s / words * 1e6 for _, upstream_s in cpu]
    return [
        Figure(
            "single_stream_ratio",
            [ratio(f, b) for b, f in pairs],
            f"one stream of {words} tokens at a time, timed from sending the request to the "
            "end of the body; tok/s of Ferry's inline stream over the bare upstream's",
            READING_CLIENT,
            {
                "bare_tok_s": p50([b for b, _ in pairs]),
                "ferry_tok_s": p50([f for _, f in pairs]),
                "lean_client_ratio": p50([ratio(f, b) for b, f in lean]),
                "lean_client_bare_tok_s": p50([b for b, _ in lean]),
                "lean_client_ferry_tok_s": p50([f for _, f in lean]),
            },
        ),
        Figure(
            "cpu_per_token_ratio",
            [ratio(api, up) for api, up in zip(api_us, upstream_us, strict=True)],
            "CPU (user + system, /proc schedstat of each process tree) the API spent per "
            "token it streamed, over the CPU the mock upstream spent per token it generated, "
            "in the same Ferry streams",
            READING_CLIENT,
            {"api_us_per_token": p50(api_us), "upstream_us_per_token": p50(upstream_us)},
        ),
    ]


async def _lean_tokens_per_s(endpoint: Endpoint, call: LeanCall, words: int) -> float:
    async with Connection(endpoint.host, endpoint.port) as conn:
        outcome = required(await call(conn, words), "stream")
    return words / outcome.total_s


async def time_to_first_token(target: Target) -> Figure:
    """p50 time to the first token, Ferry's minus the bare upstream's, per repetition."""
    plan, words = target.plan, target.plan.ttft_words
    bare, ferry = reading_bare(target.upstream.url), reading_ferry(target.api.url)
    extra_ms, bare_ms, ferry_ms = [], [], []
    async with reading_client() as client:

        async def ttft(path_stream: Awaitable[Outcome], what: str) -> float:
            outcome = required(await path_stream, what)
            assert outcome.ttft_s is not None
            return outcome.ttft_s * 1000

        for n in range(plan.repetitions + 1):  # the first round warms up
            pairs = await interleaved(
                plan.ttft_requests,
                lambda: ttft(bare.stream(client, words), "bare stream"),
                lambda: ttft(ferry.stream(client, words), "Ferry stream"),
            )
            if n:
                bare_ms.append(p50([b for b, _ in pairs]))
                ferry_ms.append(p50([f for _, f in pairs]))
                extra_ms.append(ferry_ms[-1] - bare_ms[-1])
    return Figure(
        "ttft_extra_ms",
        extra_ms,
        f"{plan.ttft_requests} sequential streams of {words} tokens per path and repetition, "
        "alternating the paths; time from sending the request to the first token",
        READING_CLIENT,
        {"bare_ttft_p50_ms": p50(bare_ms), "ferry_ttft_p50_ms": p50(ferry_ms)},
    )


async def _load_ratio(
    target: Target,
    key: str,
    calls: tuple[LeanCall, LeanCall],
    words: int,
    connections: int,
    total: int,
    how: str,
) -> Figure:
    bare_call, ferry_call = calls
    pairs = await interleaved(
        target.plan.repetitions,
        lambda: closed_loop(target.upstream, bare_call, words, connections, total),
        lambda: closed_loop(target.api, ferry_call, words, connections, total),
    )
    refused = sum(f.outcomes["refused"] for _, f in pairs)
    failures = Counter[str]()
    for b, f in pairs:
        failures.update(b.failures())
        failures.update(f.failures())
    return Figure(
        key,
        [ratio(f.rate, b.rate) for b, f in pairs],
        how,
        LEAN_CLIENT,
        {
            "bare_req_s": p50([b.rate for b, _ in pairs]),
            "ferry_req_s": p50([f.rate for _, f in pairs]),
            "ferry_refused": refused,
            "failed": dict(failures),
        },
    )


async def concurrent_streams(target: Target) -> Figure:
    plan = target.plan
    return await _load_ratio(
        target,
        "concurrent_streams_ratio",
        (bare_stream, ferry_stream),
        plan.stream_words,
        plan.streams,
        plan.stream_requests,
        f"{plan.streams} connections in a closed loop until {plan.stream_requests} streams of "
        f"{plan.stream_words} tokens completed; completed streams per second, Ferry's inline "
        "streams over the bare upstream's",
    )


async def concurrent_blocking(target: Target) -> Figure:
    plan = target.plan
    return await _load_ratio(
        target,
        "concurrent_blocking_ratio",
        (bare_blocking, ferry_blocking),
        plan.blocking_words,
        plan.blocking,
        plan.blocking_requests,
        f"{plan.blocking} connections in a closed loop until {plan.blocking_requests} "
        f"blocking requests ({plan.blocking_words}-token answers) completed; requests per "
        "second, Ferry (stream: false) over the bare upstream (stream: false)",
    )


# What the rows of the event log take, row by row, so that a short stream is measured too
# (a relation grows by whole 8 kB pages): each row's heap tuple (header and line pointer,
# its fixed-size columns, its id) with the events as stored (compressed, in line or in
# TOAST), and its primary-key index entry. Alignment padding is left out.
EVENT_LOG_BYTES = """
SELECT coalesce(sum(
           28 + pg_column_size(response_id) + 4 + 4 + 1 + 2 + 8 + pg_column_size(events)
           + 12 + pg_column_size(response_id) + 4
       ), 0)
  FROM response_event_batches
"""


async def event_log_bytes(database_url: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as db:
        row = await (await db.execute(EVENT_LOG_BYTES)).fetchone()
    assert row is not None
    return int(row[0])


async def background_against_inline(target: Target) -> list[Figure]:
    """A background stream's tok/s over an inline one's; what the background one added to
    the event log (table, indexes and TOAST), per token."""
    plan, words = target.plan, target.plan.long_words
    inline = reading_ferry(target.api.url)
    background = reading_ferry(target.api.url, background=True)
    stored: list[float] = []
    async with reading_client() as client:

        async def run_inline() -> float:
            outcome = required(await inline.stream(client, words), "inline stream")
            return words / outcome.total_s

        async def run_background() -> float:
            before = await event_log_bytes(target.database_url)
            outcome = required(await background.stream(client, words), "background stream")
            stored.append((await event_log_bytes(target.database_url) - before) / words)
            return words / outcome.total_s

        pairs = await interleaved(plan.repetitions, run_inline, run_background)
    return [
        Figure(
            "background_ratio",
            [ratio(b, i) for i, b in pairs],
            f"one stream of {words} tokens at a time, timed from sending the request to the "
            "end of the body; tok/s of a background stream (run by the worker, tailed from "
            "the event log) over an inline one",
            READING_CLIENT,
            {
                "inline_tok_s": p50([i for i, _ in pairs]),
                "background_tok_s": p50([b for _, b in pairs]),
            },
        ),
        Figure(
            "event_log_bytes_per_token",
            stored[1:],  # the warm-up's is left out, as everywhere
            f"what one background stream of {words} tokens added to the event log (each row's "
            "heap tuple with its events as stored, compressed or in TOAST, and its index "
            f"entry), divided by {words}",
            READING_CLIENT,
        ),
    ]


async def _pickup_ms(database_url: str, response_ids: list[str]) -> list[float]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as db:
        rows = await (
            await db.execute(
                "SELECT extract(epoch FROM started_at - created_at) * 1000 FROM responses"
                " WHERE id = ANY(%s) AND started_at IS NOT NULL",
                (response_ids,),
            )
        ).fetchall()
    if len(rows) != len(response_ids):
        raise BenchError("a background response was never started")
    return [float(ms) for (ms,) in rows]


async def _count(database_url: str, where: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as db:
        row = await (await db.execute(f"SELECT count(*) FROM responses WHERE {where}")).fetchone()
    assert row is not None
    return int(row[0])


async def wait_for_count(database_url: str, where: str, done: Callable[[int], bool]) -> None:
    """Poll (bounded) until the count of responses `where` satisfies `done`."""
    async with asyncio.timeout(SETTLE_TIMEOUT_S):
        while not done(await _count(database_url, where)):  # noqa: ASYNC110 (another process)
            await asyncio.sleep(0.01)  # the worker changes it; the database is the witness


async def _probe_pickups(target: Target) -> list[float]:
    """Background responses one after another, each read to its end: their pickup times."""
    ids = []
    async with Connection(target.api.host, target.api.port) as conn:
        for _ in range(target.plan.pickup_probes):
            outcome = required(await ferry_background_stream(conn, 3), "background stream")
            assert outcome.response_id is not None
            ids.append(outcome.response_id)
    return await _pickup_ms(target.database_url, ids)


async def _keep_busy(target: Target, stop: asyncio.Event) -> int:
    """Background streams one after another (each read to its end) until `stop` is set; the
    tokens they streamed."""
    tokens = 0
    async with Connection(target.api.host, target.api.port) as conn:
        while not stop.is_set():
            outcome = await ferry_background_stream(conn, target.plan.busy_words)
            tokens += required(outcome, "background stream").tokens
    return tokens


async def pickup(target: Target) -> list[Figure]:
    """Queued → started (the stored `created_at` and `started_at`), p50: with the worker
    idle, and with all its slots but one running other background responses."""
    plan = target.plan
    busy = WORKER_CONCURRENCY - 1
    running = "status = 'in_progress' AND background"
    idle_ms, loaded_ms, busy_rates = [], [], []
    for n in range(plan.repetitions + 1):  # the first round warms up
        idle = await _probe_pickups(target)
        stop = asyncio.Event()
        busy_tasks = [asyncio.create_task(_keep_busy(target, stop)) for _ in range(busy)]
        started = time.perf_counter()
        try:
            await wait_for_count(target.database_url, running, lambda c: c >= busy)
            loaded = await _probe_pickups(target)
        finally:
            stop.set()
            busy_tokens = await asyncio.gather(*busy_tasks)  # each ends with its stream
        if n:
            idle_ms.append(p50(idle))
            loaded_ms.append(p50(loaded))
            busy_rates.append(sum(busy_tokens) / (time.perf_counter() - started))
    how = (
        f"{plan.pickup_probes} background streams of 3 tokens one after another per "
        "repetition, each read to its end; started_at minus created_at as stored"
    )
    return [
        Figure("pickup_idle_ms", idle_ms, how + ", with the worker idle", LEAN_CLIENT),
        Figure(
            "pickup_loaded_ms",
            loaded_ms,
            how + f", while {busy} of the worker's {WORKER_CONCURRENCY} slots run background "
            f"streams of {plan.busy_words} tokens",
            LEAN_CLIENT,
            # The load is as heavy as the worker makes it: a faster worker is busier.
            {"busy_tok_s": p50(busy_rates)},
        ),
    ]


async def background_accept(target: Target) -> Figure:
    """Background creates per second one API process accepts; the worker, running, drains
    the queue before the next repetition."""
    plan = target.plan
    active = "status IN ('queued', 'in_progress')"
    loads = []
    for n in range(plan.repetitions + 1):  # the first round warms up
        load = await closed_loop(
            target.api,
            ferry_background_create,
            plan.accept_words,
            plan.accept_connections,
            plan.accept_requests,
        )
        await wait_for_count(target.database_url, active, lambda c: c == 0)
        if n:
            loads.append(load)
    return Figure(
        "background_creates_per_s",
        [load.rate for load in loads],
        f"{plan.accept_connections} connections in a closed loop sending "
        f"{plan.accept_requests} background creates (stream: false); accepted (200, "
        "queued) per second, while the worker runs them",
        LEAN_CLIENT,
        {
            "refused": sum(load.outcomes["refused"] for load in loads),
            "failed": sum(sum(load.failures().values()) for load in loads),
        },
    )


async def memory_after_burst(target: Target) -> Figure:
    """The API's resident memory after each burst of concurrent inline streams has ended."""
    plan = target.plan
    before = procfs.rss_mib(target.api_pid)
    after, refused, completed, failed = [], 0, 0, Counter[str]()
    for _ in range(plan.repetitions):
        load = await closed_loop(target.api, ferry_stream, plan.burst_words, plan.burst, plan.burst)
        after.append(procfs.rss_mib(target.api_pid))
        refused += load.outcomes["refused"]
        completed += load.completed
        failed.update(load.failures())
    return Figure(
        "rss_after_burst_mib",
        after,
        f"VmRSS of the API process (/proc) once each burst of {plan.burst} concurrent inline "
        f"streams of {plan.burst_words} tokens has ended (those beyond "
        "MAX_INLINE_PER_PROCESS are refused with 429)",
        LEAN_CLIENT,
        {
            "rss_before_bursts_mib": before,
            "peak_rss_mib": procfs.peak_rss_mib(target.api_pid),
            "completed": completed,
            "refused": refused,
            "failed": dict(failed),
        },
    )
