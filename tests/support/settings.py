"""Settings the whole suite runs with."""

from __future__ import annotations

from typing import Any

# Small enough that the turn-limit tests end quickly.
TEST_MAX_MODEL_TURNS = 3

# What every API and worker of the suite runs with besides the URLs and files the fixtures
# make, whether in process (Settings) or as a process (environment): one list, so the two
# cannot drift apart.
SUITE_TUNING: dict[str, Any] = {
    # Frequent enough that an idle stream shows a keep-alive within a test's patience.
    "sse_keepalive_s": 0.5,
    "max_model_turns": TEST_MAX_MODEL_TURNS,
    # Upstream retries wait milliseconds, not seconds.
    "upstream_backoff_base_s": 0.05,
    # So do webhook retries, and an idle worker finds a retry that is due soon after.
    "webhook_backoff_base_s": 0.05,
    "webhook_backoff_max_s": 0.2,
    "worker_poll_interval_s": 0.25,
}


def as_environment(values: dict[str, Any]) -> dict[str, str]:
    """Settings as the environment variables a Ferry process reads them from."""
    return {name.upper(): str(value) for name, value in values.items()}
