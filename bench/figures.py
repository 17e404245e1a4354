"""The figures the benchmark reports: what each one is, its target, and what was measured.

Every figure is a number per repetition; the report gives their min, median and max. Ratios
set Ferry against the bare upstream (or inline against background) measured in the same
run, so they hold on any machine; sizes (bytes, MiB) do not depend on its speed; absolute
times and rates do, and are reported, never held to a threshold.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bench.plan import Plan


class Basis(StrEnum):
    RATIO = "ratio"  # against a path measured alongside it: thresholds apply
    SIZE = "size"  # bytes or MiB: thresholds apply
    TIME = "time"  # depends on the machine's speed and load: reported only


class Better(StrEnum):
    HIGHER = "higher"
    LOWER = "lower"


@dataclass(frozen=True)
class Spec:
    key: str
    title: str  # a format string; its fields are the plan's
    unit: str
    basis: Basis
    better: Better
    target: float | None
    now: str  # what the figure was before this harness existed

    def target_text(self) -> str:
        if self.target is None:
            return "—"
        sign = "≥" if self.better is Better.HIGHER else "≤"
        return f"{sign} {self.target:g} {self.unit}".strip()

    def meets(self, value: float) -> bool | None:
        if self.target is None:
            return None
        return value >= self.target if self.better is Better.HIGHER else value <= self.target


SPECS = [
    Spec(
        "single_stream_ratio",
        "single stream, {long_words:,} tokens: Ferry tok/s ÷ bare upstream tok/s",
        "",
        Basis.RATIO,
        Better.HIGHER,
        0.6,
        "0.22 to 0.31",
    ),
    Spec(
        "ttft_extra_ms",
        "TTFT p50, {ttft_words}-token answers, sequential: Ferry minus bare upstream",
        "ms",
        Basis.TIME,
        Better.LOWER,
        4.0,
        "+11 to +14 ms",
    ),
    Spec(
        "concurrent_streams_ratio",
        "{streams} concurrent streams of {stream_words} tokens: completed req/s ratio",
        "",
        Basis.RATIO,
        Better.HIGHER,
        0.5,
        "0.22 to 0.34",
    ),
    Spec(
        "concurrent_blocking_ratio",
        "{blocking} concurrent blocking requests: req/s ratio",
        "",
        Basis.RATIO,
        Better.HIGHER,
        0.5,
        "0.27",
    ),
    Spec(
        "cpu_per_token_ratio",
        "API CPU per streamed token ÷ the mock upstream's CPU per generated token",
        "x",
        Basis.RATIO,
        Better.LOWER,
        2.0,
        "≈ 8x (≈ 137 µs)",
    ),
    Spec(
        "background_ratio",
        "background stream of {long_words:,} tokens: tok/s ÷ inline",
        "",
        Basis.RATIO,
        Better.HIGHER,
        0.8,
        "0.8 to 0.95",
    ),
    Spec(
        "event_log_bytes_per_token",
        "event-log storage per streamed token (table + indexes + TOAST)",
        "bytes",
        Basis.SIZE,
        Better.LOWER,
        64.0,
        "≈ 515 bytes",
    ),
    Spec(
        "rss_after_burst_mib",
        "API RSS after {burst:,} concurrent streams",
        "MiB",
        Basis.SIZE,
        Better.LOWER,
        150.0,
        "≈ 205 MiB",
    ),
    Spec(
        "background_creates_per_s",
        "background accept: creates/s on one API process ({accept_connections} connections)",
        "/s",
        Basis.TIME,
        Better.HIGHER,
        500.0,
        "≈ 200",
    ),
    Spec(
        "pickup_idle_ms",
        "background pickup, queued → started, p50, idle worker",
        "ms",
        Basis.TIME,
        Better.LOWER,
        None,
        "6.7 ms",
    ),
    Spec(
        "pickup_loaded_ms",
        "background pickup, queued → started, p50, worker busy with other responses",
        "ms",
        Basis.TIME,
        Better.LOWER,
        20.0,
        "not measured",
    ),
]
SPEC_BY_KEY = {spec.key: spec for spec in SPECS}


@dataclass
class Figure:
    """One figure as measured: a value per repetition, and how it was obtained."""

    key: str
    samples: list[float]
    how: str  # one sentence: what was timed or read
    client: str  # which client made the requests
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> Spec:
        return SPEC_BY_KEY[self.key]

    def summary(self, plan: Plan) -> dict[str, Any]:
        spec = self.spec
        finite = [s for s in self.samples if math.isfinite(s)]
        median = statistics.median(finite) if finite else math.nan
        return {
            "key": self.key,
            "title": spec.title.format(**vars(plan)),
            "unit": spec.unit,
            "basis": spec.basis.value,
            "now": spec.now,
            "target": spec.target,
            "target_text": spec.target_text(),
            "better": spec.better.value,
            "min": min(finite) if finite else math.nan,
            "median": median,
            "max": max(finite) if finite else math.nan,
            "samples": self.samples,
            "meets_target": spec.meets(median) if finite else None,
            "how": self.how,
            "client": self.client,
            "details": self.details,
        }


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.nan


def p50(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan
