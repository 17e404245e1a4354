"""A bounded run of the chaos harness (bench/chaos.py): a few seconds of mixed load on two
APIs and two workers while processes are SIGKILLed and Postgres is crashed once. Nothing
accepted may be lost, and no tool call may take effect twice."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support import PROJECT_ROOT


def test_a_short_chaos_run_loses_nothing_and_applies_nothing_twice() -> None:
    run = subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "bench" / "chaos.py"),
            *("--duration", "6", "--kills", "2", "--apis", "2", "--workers", "2"),
            *("--seed", "7", "--settle", "90"),
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout)
    assert report["accepted"] > 0
    assert report["lost"] == 0
    assert report["duplicate_tool_effects"] == 0
    assert report["tool_calls"] > 0  # the tool-calling part of the load ran
    assert report["completed"] + report["failed"] == report["accepted"]
    assert "postgres crashed" in report["faults"]
