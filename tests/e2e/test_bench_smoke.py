"""The benchmark (`python -m bench`): its mock upstream speaks chat completions as the
openai SDK expects, and its quick version runs end to end and reports every figure.

No thresholds here: a test machine's numbers mean nothing; that the harness still starts
everything, measures every figure and writes a sane report does.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from openai.types.chat import ChatCompletionUserMessageParam

from bench.figures import SPECS
from tests.support import PROJECT_ROOT
from tests.support.processes import STARTUP_TIMEOUT_S, command_env, free_port, run_command

QUICK_BOUND_S = 120.0
ASKED: list[ChatCompletionUserMessageParam] = [{"role": "user", "content": "Answer in 7 words."}]


@pytest.fixture(scope="module")
def mock_sdk() -> Iterator[openai.OpenAI]:
    """The SDK on the benchmark's mock upstream, run as the benchmark runs it."""
    port = free_port()
    with run_command("-m", "bench.mock_upstream", "--port", str(port), env=command_env()) as mock:
        mock.wait_for_line(r"mock upstream listening", timeout=STARTUP_TIMEOUT_S)
        url = f"http://127.0.0.1:{port}/v1"
        with openai.OpenAI(base_url=url, api_key="unused", max_retries=0) as client:
            yield client


def test_the_mock_streams_one_chunk_a_word_and_the_usage_last(mock_sdk: openai.OpenAI) -> None:
    chunks = list(
        mock_sdk.chat.completions.create(
            model="bench", messages=ASKED, stream=True, stream_options={"include_usage": True}
        )
    )

    words = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert words == ["token "] * 7
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7
    assert all(c.usage is None for c in chunks[:-1])


def test_the_mock_answers_whole_and_stops_at_max_tokens(mock_sdk: openai.OpenAI) -> None:
    whole = mock_sdk.chat.completions.create(model="bench", messages=ASKED)
    cut = mock_sdk.chat.completions.create(model="bench", messages=ASKED, max_tokens=3)

    assert whole.choices[0].message.content == "token " * 7
    assert whole.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == "token " * 3
    assert cut.choices[0].finish_reason == "length"
    assert cut.usage is not None and cut.usage.completion_tokens == 3


def test_the_quick_benchmark_reports_every_figure(postgres_admin_url: str, tmp_path: Path) -> None:
    options = ["--quick", "--out", str(tmp_path), "--admin-url", postgres_admin_url]
    run = subprocess.run(
        [sys.executable, "-m", "bench", *options],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=QUICK_BOUND_S,
        stdin=subprocess.DEVNULL,
    )

    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads((tmp_path / "bench.json").read_text())
    figures = {figure["key"]: figure for figure in report["figures"]}
    assert list(figures) == [spec.key for spec in SPECS]
    for key, figure in figures.items():
        values = [figure["min"], figure["median"], figure["max"], *figure["samples"]]
        assert all(v is not None and math.isfinite(v) and v > 0 for v in values), (key, values)
        assert figure["details"].get("failed") in (None, {}, 0), (key, figure["details"])
    markdown = (tmp_path / "bench.md").read_text()
    for figure in figures.values():
        assert figure["title"] in run.stdout  # the printed table
        assert figure["title"] in markdown
    missed = any(figure["meets_target"] is False for figure in figures.values())
    assert ("What is left, and why" in markdown) == missed
