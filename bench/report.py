"""The benchmark's report: a JSON document, the same as Markdown, and the table printed."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

NOTE = (
    "Ratios set Ferry against the bare upstream measured in the same run (the background "
    "figure: against an inline stream); sizes do not depend on the machine's speed. Times "
    "and rates (basis: time) do, and are shown against their targets for reference only."
)

# Why a figure misses its target is found by profiling, by hand, not by a run: a report
# with a miss says where that is written down.
MISSES = (
    'For each figure that misses its target, README.md (Performance: "What is left, and '
    'why") has the profile or timeline behind it, why this design goes no further, and the '
    "next design."
)


def _finite(value: Any) -> Any:
    """JSON has no NaN: a figure that could not be computed is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _number(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    digits = 2 if abs(value) < 10 else 1 if abs(value) < 100 else 0
    return f"{value:,.{digits}f}"


def _meets(figure: dict[str, Any]) -> str:
    verdict = figure["meets_target"]
    if verdict is None:
        return "—"
    mark = "yes" if verdict else "no"
    return f"({mark})" if figure["basis"] == "time" else mark


def table(figures: list[dict[str, Any]]) -> str:
    """The figures as a Markdown table."""
    lines = [
        "| figure | median | range | unit | target | meets | before |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        unit = f["unit"] or "ratio"
        spread = f"{_number(f['min'])} to {_number(f['max'])}"
        lines.append(
            f"| {f['title']} | {_number(f['median'])} | {spread} | {unit} | "
            f"{f['target_text']} | {_meets(f)} | {f['now']} |"
        )
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    parts = [
        "# Ferry benchmark",
        "",
        f"`{report['command']}` — {report['mode']} run, repetitions: "
        f"{report['plan']['repetitions']} after a warm-up, {report['duration_s']:.0f} s, commit "
        f"{report['commit'] or 'unknown'}, {report['database']}.",
        "",
        f"Machine: {machine['cpus']} CPUs, load average {machine['load_before']} before and "
        f"{machine['load_after']} after; Python {machine['python']}.",
        "",
        table(report["figures"]),
        "",
        NOTE + ' "meets" in parentheses: a time, for reference.',
        "",
        *([MISSES, ""] if any(f["meets_target"] is False for f in report["figures"]) else []),
        "## How each figure was measured",
        "",
    ]
    for f in report["figures"]:
        details = ", ".join(f"{k}: {_detail(v)}" for k, v in f["details"].items())
        parts.append(f"- **{f['title']}** — {f['how']}. Client: {f['client']}.")
        if details:
            parts.append(f"  ({details})")
    return "\n".join(parts) + "\n"


def _detail(value: Any) -> str:
    if isinstance(value, float):
        return _number(value)
    return str(value)


def write(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    as_json, as_markdown = out / "bench.json", out / "bench.md"
    as_json.write_text(json.dumps(_finite(report), indent=2, ensure_ascii=False) + "\n")
    as_markdown.write_text(markdown(report))
    return as_json, as_markdown
