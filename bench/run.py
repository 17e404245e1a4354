"""Ferry's benchmark: what the proxy costs, measured against the bare upstream in one run.

    python -m bench [--quick] [--out DIR] [--repetitions N] [--admin-url URL] [--check]
                    [--only single,ttft,streams,blocking,background,pickup,accept,memory]

It starts its own database (an embedded Postgres, or a scratch database on the server at
`--admin-url`), a chat-completions mock upstream that streams as fast as it is read
(bench/mock_upstream.py), Ferry's API and one worker, each as a process of its own; then it
measures every figure of figures.py (phases.py says how), writes bench.json and bench.md to
`--out` and prints the table. `--quick` is the small version the test suite runs. The exit
code is 0 when every figure was measured, 2 when a request that had to succeed failed; with
`--check`, 1 when a ratio or size figure misses its target (times and rates never decide
it: they depend on the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import phases, report
from bench.cluster import (
    ROOT,
    Process,
    api_process,
    ferry_env,
    free_port,
    own_database,
    worker_process,
)
from bench.figures import SPECS, Basis, Figure
from bench.phases import Endpoint, Target
from bench.plan import FULL, QUICK, WORKER_CONCURRENCY, Plan

DEFAULT_OUT = ROOT / "bench" / "results"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# Each measurement: the name `--only` knows it by, what it measures, how.
STEPS: list[tuple[str, str, Callable[[Target], Awaitable[Figure | list[Figure]]]]] = [
    ("single", "single stream and CPU per token", phases.single_stream),
    ("ttft", "time to first token", phases.time_to_first_token),
    ("streams", "concurrent streams", phases.concurrent_streams),
    ("blocking", "concurrent blocking requests", phases.concurrent_blocking),
    (
        "background",
        "background against inline, event-log storage",
        phases.background_against_inline,
    ),
    ("pickup", "background pickup", phases.pickup),
    ("accept", "background accept", phases.background_accept),
    ("memory", "memory after bursts", phases.memory_after_burst),
]


async def measure(target: Target, only: set[str]) -> list[Figure]:
    figures: list[Figure] = []
    for key, name, step in STEPS:
        if only and key not in only:
            continue
        started = time.monotonic()
        log(f"bench: {name} ...")
        async with asyncio.timeout(target.plan.phase_timeout_s):
            result = await step(target)
        figures.extend(result if isinstance(result, list) else [result])
        log(f"bench: {name} done in {time.monotonic() - started:.1f} s")
    order = [spec.key for spec in SPECS]
    return sorted(figures, key=lambda figure: order.index(figure.key))


def _commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return None
    return done.stdout.strip() or None


def run(
    plan: Plan, admin_url: str | None, workdir: Path, only: set[str]
) -> tuple[list[Figure], str]:
    """Start everything, measure, stop everything: the figures, and which database it was."""
    logs = workdir / "logs"
    logs.mkdir()
    with own_database(workdir, admin_url) as database_url:
        upstream_port = free_port()
        upstream = Process(
            ["-m", "bench.mock_upstream", "--port", str(upstream_port)],
            dict(os.environ),
            logs / "upstream.log",
            ready_url=f"http://127.0.0.1:{upstream_port}/v1/models",
        )
        env = ferry_env(database_url, f"http://127.0.0.1:{upstream_port}/v1")
        api, api_url = api_process(env, logs / "api.log")
        worker = worker_process(env, logs / "worker.log", "--concurrency", str(WORKER_CONCURRENCY))
        processes = [upstream, api, worker]
        try:
            for process in processes:
                process.launch()  # all at once: they start up in parallel
            for process in processes:
                process.wait_ready()
            target = Target(
                upstream=Endpoint("127.0.0.1", upstream_port),
                api=Endpoint("127.0.0.1", int(api_url.rsplit(":", 1)[1])),
                upstream_pid=upstream.pid,
                api_pid=api.pid,
                database_url=database_url,
                plan=plan,
            )
            figures = asyncio.run(measure(target, only))
        except BaseException:
            for process in processes:
                log(f"--- last lines of {process.log.name} ---\n{process.log_tail()}")
            raise
        finally:
            for process in reversed(processes):
                process.stop()
    database = f"scratch database on {admin_url}" if admin_url else "embedded Postgres"
    return figures, database


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the small version (smoke test)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="default: %(default)s")
    parser.add_argument("--repetitions", type=int, help="measured rounds of each figure")
    parser.add_argument(
        "--admin-url",
        help="a Postgres server to make a scratch database on, e.g. "
        "postgresql://postgres@127.0.0.1:5432/postgres (default: an embedded Postgres)",
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a ratio or size misses its target"
    )
    parser.add_argument(
        "--only",
        default="",
        help="measure only these, comma-separated: " + ", ".join(key for key, _, _ in STEPS),
    )
    args = parser.parse_args(argv)
    only = {key for key in args.only.split(",") if key}
    unknown = only - {key for key, _, _ in STEPS}
    if unknown:
        parser.error(f"--only: unknown {', '.join(sorted(unknown))}")
    plan = (QUICK if args.quick else FULL).with_repetitions(args.repetitions)

    started, load_before = time.monotonic(), os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="ferry-bench-") as tmp:
        try:
            figures, database = run(plan, args.admin_url, Path(tmp), only)
        except phases.BenchError as exc:
            log(f"bench: could not measure: {exc}")
            return 2
    command = shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)])
    summaries = [figure.summary(plan) for figure in figures]
    document: dict[str, Any] = {
        "command": command,
        "mode": "quick" if args.quick else "full",
        "commit": _commit(),
        "database": database,
        "duration_s": time.monotonic() - started,
        "machine": {
            "cpus": os.cpu_count(),
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
        },
        "plan": vars(plan),
        "figures": summaries,
    }
    as_json, as_markdown = report.write(document, args.out)
    print(report.table(summaries))
    log(f"bench: wrote {as_json} and {as_markdown}")
    missed = [
        f["key"] for f in summaries if f["basis"] != Basis.TIME.value and f["meets_target"] is False
    ]
    if args.check and missed:
        log(f"bench: below target: {', '.join(missed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
