"""The metrics module's bounded labels and recording helpers, without a server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from app import metrics
from app.shapes import Event


@dataclass(frozen=True)
class Row:
    background: bool = False
    stream: bool = False
    service_tier: str = "auto"
    model: str = "m"


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def listed_models() -> Iterator[None]:
    metrics.configure(models=["gpt-listed"])
    yield
    metrics.configure(models=[])


@pytest.mark.parametrize(
    ("background", "stream", "tier", "mode"),
    [
        (False, False, "auto", "blocking"),
        (False, True, "default", "stream"),
        (True, False, "auto", "background"),
        (True, True, "flex", "background_stream"),
        (False, False, "flex", "flex"),
        (False, True, "flex", "flex_stream"),
    ],
)
def test_every_way_to_run_has_its_mode(
    background: bool, stream: bool, tier: str, mode: str
) -> None:
    assert mode_of(background, stream, tier) == mode
    assert mode in metrics.MODES


def mode_of(background: bool, stream: bool, tier: str) -> str:
    return metrics.mode_label(background=background, stream=stream, service_tier=tier)


def test_only_listed_models_become_labels(listed_models: None) -> None:
    assert metrics.model_label("gpt-listed") == "gpt-listed"
    assert metrics.model_label("resp_secret or anything") == metrics.OTHER_MODEL


def test_an_ending_counts_once_with_its_duration(listed_models: None) -> None:
    labels = {"mode": "stream", "model": "gpt-listed", "status": "failed"}
    before = sample("ferry_responses_ended_total", **labels)
    seconds_before = sample("ferry_response_duration_seconds_sum", **labels)
    metrics.response_ended(Row(stream=True, model="gpt-listed"), "failed", 2.5)
    assert sample("ferry_responses_ended_total", **labels) == before + 1
    assert sample("ferry_response_duration_seconds_sum", **labels) == seconds_before + 2.5


def test_a_sweep_report_is_counted_by_kind() -> None:
    before = {kind: sample("ferry_recoveries_total", kind=kind) for kind in ("stalled_retried",)}
    metrics.recoveries({"retried": 2, "gave_up": 0, "not_a_kind": 5})
    after = sample("ferry_recoveries_total", kind="stalled_retried")
    assert after == before["stalled_retried"] + 2
    assert (
        metrics.REGISTRY.get_sample_value("ferry_recoveries_total", {"kind": "not_a_kind"}) is None
    )


class Collect:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.flushes = 0

    async def send(self, event: Event) -> None:
        self.events.append(event)

    async def flush(self) -> None:
        self.flushes += 1


async def test_the_first_delta_of_a_run_is_timed_once() -> None:
    labels = {"mode": "flex", "model": "other"}
    before = sample("ferry_time_to_first_token_seconds_count", **labels)
    inner = Collect()
    timer = metrics.FirstTokenTimer(inner, Row(service_tier="flex"))
    events: list[Event] = [
        {"type": "response.created"},
        {"type": "response.reasoning_text.delta", "delta": "hm"},
        {"type": "response.output_text.delta", "delta": "hi"},
    ]
    for event in events:
        await timer.send(event)
    await timer.flush()
    assert inner.events == events and inner.flushes == 1
    assert sample("ferry_time_to_first_token_seconds_count", **labels) == before + 1


def test_a_failure_before_the_first_chunk_is_named_by_its_status() -> None:
    assert metrics.upstream_status_outcome(None) == "error"
    assert metrics.upstream_status_outcome(404) == "4xx"
    assert metrics.upstream_status_outcome(502) == "5xx"
