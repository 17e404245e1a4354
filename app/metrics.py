"""Ferry's Prometheus metrics: every family defined once, and the small calls that move them.

The engine, the store and the front end record through the functions here; this module
imports nothing of theirs. What is cheap to read when scraped (queue depth, the oldest
queued job, the connection pool) is not recorded here but read at scrape time
(`app.scrape`).

Label values are bounded: a mode, a status, an outcome, a registered tool's name, or a model
named in METRICS_MODELS (any other model is `other`). Never an id, a key or a raw string
from a request.

With PROMETHEUS_MULTIPROC_DIR set (before the process starts), prometheus_client keeps
these values in files in that directory, and a scrape adds up every process's files; the
gauges of open streams then count the live processes only.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from app.shapes import Event

#: The families below, and nothing else: a scrape combines it with what is read live.
REGISTRY = CollectorRegistry(auto_describe=True)

OTHER_MODEL = "other"
MODES = ("blocking", "stream", "background", "background_stream", "flex", "flex_stream")
UPSTREAM_OUTCOMES = ("ok", "retried", "4xx", "5xx", "cut", "error")
TOOL_OUTCOMES = ("ok", "error", "skipped", "cancelled")
#: The tool label of every MCP call: its tools are named by remote servers, not the operator.
MCP_TOOL = "mcp"
# The recovery sweep's report (WorkerSide.recover) -> the `kind` label of each count.
RECOVERY_KINDS = {
    "retried": "stalled_retried",
    "gave_up": "max_attempts",
    "overran": "max_run_time",
    "handed_over": "lease_handed_over",
    "requeued": "orphan_requeued",
    "orphans_failed": "orphan_failed",
}

# Seconds: from a blink to a long generation.
_LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600)

RESPONSES_CREATED = Counter(
    "ferry_responses_created",
    "Responses accepted, by mode and model.",
    ["mode", "model"],
    registry=REGISTRY,
)
RESPONSES_ENDED = Counter(
    "ferry_responses_ended",
    "Responses that reached a terminal status, by mode, model and status.",
    ["mode", "model", "status"],
    registry=REGISTRY,
)
RESPONSE_DURATION = Histogram(
    "ferry_response_duration_seconds",
    "From a response's creation to its terminal status (the database's clock).",
    ["mode", "model", "status"],
    buckets=_DURATION_BUCKETS,
    registry=REGISTRY,
)
TIME_TO_FIRST_TOKEN = Histogram(
    "ferry_time_to_first_token_seconds",
    "From the start of a run (inline, or a worker's attempt) to its first streamed delta.",
    ["mode", "model"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
INLINE_STREAMS = Gauge(
    "ferry_inline_streams_active",
    "Inline SSE streams open now.",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
BACKGROUND_TAILS = Gauge(
    "ferry_background_tails_active",
    "Clients following a background response's event log now.",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
UPSTREAM_REQUESTS = Counter(
    "ferry_upstream_requests",
    "Chat-completions requests sent upstream, by outcome: ok, retried (a try that failed "
    "before its first chunk and was tried again), 4xx, 5xx, cut (ended or broke after the "
    "first chunk without a finish reason), error (unreachable, timed out, malformed).",
    ["outcome"],
    registry=REGISTRY,
)
UPSTREAM_LATENCY = Histogram(
    "ferry_upstream_latency_seconds",
    "From sending a request upstream to its first chunk, or to its failure before one.",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
TOOL_CALLS = Counter(
    "ferry_tool_calls",
    "Server-side tool calls by tool (a registered HTTP tool's name, or mcp) and outcome.",
    ["tool", "outcome"],
    registry=REGISTRY,
)
RECOVERIES = Counter(
    "ferry_recoveries",
    "What recovery sweeps did: stalled jobs retried, inline leases handed over, responses "
    "failed by max attempts or max run time, orphans queued again or failed.",
    ["kind"],
    registry=REGISTRY,
)
EVENT_LOG_BATCHES = Counter(
    "ferry_event_log_batches_written",
    "Batches (rows) appended to background event logs.",
    registry=REGISTRY,
)
EVENT_LOG_EVENTS = Counter(
    "ferry_event_log_events_written",
    "Events appended to background event logs.",
    registry=REGISTRY,
)
SCRAPE_ERRORS = Counter(
    "ferry_scrape_errors",
    "Scrapes that could not read a live value (the database did not answer in time).",
    ["source"],
    registry=REGISTRY,
)

# Known label values start at zero, so a rate() over them works from the first scrape.
for _outcome in UPSTREAM_OUTCOMES:
    UPSTREAM_REQUESTS.labels(_outcome)
for _kind in RECOVERY_KINDS.values():
    RECOVERIES.labels(_kind)
SCRAPE_ERRORS.labels("database")

_models: frozenset[str] = frozenset()


def configure(models: Iterable[str]) -> None:
    """The models that label metrics by name (METRICS_MODELS); set once per process."""
    global _models
    _models = frozenset(models)


def model_label(model: str) -> str:
    return model if model in _models else OTHER_MODEL


def mode_label(*, background: bool, stream: bool, service_tier: str) -> str:
    """One of MODES: how the response was asked to run."""
    if background:
        return "background_stream" if stream else "background"
    if service_tier == "flex":
        return "flex_stream" if stream else "flex"
    return "stream" if stream else "blocking"


class ResponseLike(Protocol):
    """What labels a response: a stored row has all of it."""

    @property
    def background(self) -> bool: ...
    @property
    def stream(self) -> bool: ...
    @property
    def service_tier(self) -> str: ...
    @property
    def model(self) -> str: ...


def _labels(response: ResponseLike) -> tuple[str, str]:
    mode = mode_label(
        background=response.background,
        stream=response.stream,
        service_tier=response.service_tier,
    )
    return mode, model_label(response.model)


def response_created(response: ResponseLike) -> None:
    RESPONSES_CREATED.labels(*_labels(response)).inc()


def response_ended(response: ResponseLike, status: str, duration_s: float | None) -> None:
    mode, model = _labels(response)
    RESPONSES_ENDED.labels(mode, model, status).inc()
    if duration_s is not None:
        RESPONSE_DURATION.labels(mode, model, status).observe(max(duration_s, 0.0))


class _EventSink(Protocol):
    async def send(self, event: Event) -> None: ...
    async def flush(self) -> None: ...


class FirstTokenTimer:
    """An event sink that passes everything on, timing the run's first delta event.

    Made when a run starts; the first `*.delta` event it carries (text, reasoning, a
    function call's arguments) is the first token.
    """

    def __init__(self, sink: _EventSink, response: ResponseLike) -> None:
        self._sink = sink
        self._labels = _labels(response)
        self._started = time.monotonic()
        self._timed = False

    async def send(self, event: Event) -> None:
        if not self._timed and str(event.get("type", "")).endswith(".delta"):
            self._timed = True
            elapsed = time.monotonic() - self._started
            TIME_TO_FIRST_TOKEN.labels(*self._labels).observe(elapsed)
        await self._sink.send(event)

    async def flush(self) -> None:
        await self._sink.flush()


def upstream_request(outcome: str, latency_s: float | None = None) -> None:
    """One upstream try ended as `outcome` (one of UPSTREAM_OUTCOMES)."""
    UPSTREAM_REQUESTS.labels(outcome).inc()
    if latency_s is not None:
        UPSTREAM_LATENCY.observe(latency_s)


def upstream_status_outcome(status: int | None) -> str:
    """The outcome of a try that failed for good before its first chunk."""
    if status is None:
        return "error"
    return "5xx" if status >= 500 else "4xx"


def tool_call(tool: str, outcome: str) -> None:
    """A server-side call of `tool` (a registered tool's name, or MCP_TOOL) ended."""
    TOOL_CALLS.labels(tool, outcome).inc()


def recoveries(report: Mapping[str, int]) -> None:
    """Count what one recovery sweep did (its report, as WorkerSide.recover returns it)."""
    for key, count in report.items():
        kind = RECOVERY_KINDS.get(key)
        if kind is not None and count:
            RECOVERIES.labels(kind).inc(count)


def event_log_written(events: int) -> None:
    """One batch of `events` events was appended to an event log."""
    EVENT_LOG_BATCHES.inc()
    EVENT_LOG_EVENTS.inc(events)


def scrape_error(source: str) -> None:
    SCRAPE_ERRORS.labels(source).inc()
