"""How big each measurement is: the full run the figures are quoted from, and the quick one
the test suite runs so that the harness never rots."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# Jobs the bench's worker runs at once: Ferry's default (WORKER_CONCURRENCY).
WORKER_CONCURRENCY = 4


@dataclass(frozen=True)
class Plan:
    repetitions: int  # measured rounds of each figure, after a warm-up round
    long_words: int  # single stream, and background against inline
    ttft_words: int
    ttft_requests: int  # per path and repetition, sequential, alternating the paths
    streams: int  # concurrent streams...
    stream_words: int
    stream_requests: int  # ...completing this many requests per path and repetition
    blocking: int  # concurrent blocking requests...
    blocking_words: int
    blocking_requests: int  # ...completing this many per path and repetition
    burst: int  # concurrent inline streams before the API's memory is read
    burst_words: int
    accept_connections: int  # connections sending background creates...
    accept_requests: int  # ...this many per repetition
    accept_words: int
    pickup_probes: int  # background responses timed from queued to started, per condition
    busy_words: int  # the answers that keep the worker busy meanwhile
    phase_timeout_s: float  # bound on any one measurement

    def with_repetitions(self, repetitions: int | None) -> Plan:
        if repetitions is None:
            return self
        return dataclasses.replace(self, repetitions=repetitions)


FULL = Plan(
    repetitions=5,
    long_words=2000,
    ttft_words=50,
    ttft_requests=20,
    streams=50,
    stream_words=200,
    stream_requests=150,
    blocking=200,
    blocking_words=50,
    blocking_requests=600,
    burst=1000,
    burst_words=200,
    accept_connections=200,
    accept_requests=600,
    accept_words=5,
    pickup_probes=10,
    busy_words=2000,
    phase_timeout_s=600.0,
)

QUICK = Plan(
    repetitions=1,
    long_words=200,
    ttft_words=20,
    ttft_requests=3,
    streams=5,
    stream_words=20,
    stream_requests=10,
    blocking=10,
    blocking_words=20,
    blocking_requests=20,
    burst=20,
    burst_words=20,
    accept_connections=10,
    accept_requests=20,
    accept_words=5,
    pickup_probes=2,
    busy_words=200,
    phase_timeout_s=60.0,
)
