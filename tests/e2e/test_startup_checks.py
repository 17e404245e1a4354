"""The real commands with bad settings: each stops at start with one line naming the
variable, and exit status 2 — no traceback, and no waiting for a first request to fail.
And the `ferry` console script, as pip installs it, running the worker."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.support.processes import STARTUP_TIMEOUT_S, command_env, run_command

# What the `ferry` script pip generates does: call app.commands:main with sys.argv.
FERRY = ("-c", "import sys; from app.commands import main; sys.exit(main())")
COMMANDS = {
    "ferry serve": (*FERRY, "serve"),
    "python -m app serve": ("-m", "app", "serve", "--no-migrate"),
    "python -m worker": ("-m", "worker"),
    "ferry worker": (*FERRY, "worker"),
    "python -m app migrate": ("-m", "app", "migrate"),
}


def bad_tools_file(tmp_path: Path) -> str:
    path = tmp_path / "tools.toml"
    path.write_text(
        '[[tools]]\nname = "lookup"\nurl = "http://tools.local/lookup"\n'
        'parameters = { type = "object", properties = { q = { type = 3 } } }\n'
    )
    return str(path)


@pytest.mark.parametrize("command", list(COMMANDS), ids=list(COMMANDS))
@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("UPSTREAM_TIMEOUT_S", "-5", "Input should be greater than 0 (got '-5')"),
        (
            "DATABASE_URL",
            "postgresql://ferry:hunter2@db:5432/ferry?colour=blue",
            'not a Postgres connection URL: invalid URI query parameter: "colour"',
        ),
        ("TOOLS_FILE", "{tmp}/absent.toml", "cannot read tools file"),
        ("TOOLS_FILE", "{bad_tools}", "tools[0].parameters['properties']['q']"),
    ],
    ids=["negative-timeout", "unparseable-url", "unreadable-tools-file", "bad-tool-schema"],
)
def test_a_bad_setting_stops_the_process_at_start_in_one_line(
    database_url: str, tmp_path: Path, command: str, variable: str, value: str, says: str
) -> None:
    value = value.format(tmp=tmp_path, bad_tools=bad_tools_file(tmp_path))
    env = command_env(**{"DATABASE_URL": database_url, variable: value})
    with run_command(*COMMANDS[command], env=env) as process:
        code = process.wait_exit(STARTUP_TIMEOUT_S)
    assert code == 2, process.describe()
    (line,) = process.lines["stderr"]
    assert line.startswith(f"{command}: bad setting {variable}: "), line
    assert says in line, line
    assert "hunter2" not in line
    assert process.output("stdout") == ""


def test_an_option_names_itself_beside_its_variable(database_url: str) -> None:
    env = command_env(DATABASE_URL=database_url)
    with run_command(*FERRY, "serve", "--port", "http", env=env) as process:
        assert process.wait_exit(STARTUP_TIMEOUT_S) == 2
    (line,) = process.lines["stderr"]
    assert line.startswith("ferry serve: bad setting PORT (from --port): "), line


def test_help_names_the_variable_behind_each_option() -> None:
    with run_command(*FERRY, "worker", "--help", env=command_env()) as process:
        assert process.wait_exit(STARTUP_TIMEOUT_S) == 0
    text = " ".join(process.output("stdout").split())
    assert text.startswith("usage: ferry worker [options]")
    assert "--worker-concurrency WORKER_CONCURRENCY, --concurrency WORKER_CONCURRENCY" in text
    assert "[env WORKER_CONCURRENCY; default 4]" in text
    assert "[env DATABASE_URL; default empty]" in text


def test_ferry_worker_runs_the_worker(database_url: str) -> None:
    env = command_env(DATABASE_URL=database_url)
    with run_command(*FERRY, "worker", "--concurrency", "3", env=env) as worker:
        ready = json.loads(worker.wait_for_line(r'"worker ready"', timeout=STARTUP_TIMEOUT_S))
        assert ready["concurrency"] == 3
        worker.popen.send_signal(signal.SIGTERM)
        assert worker.wait_exit(STARTUP_TIMEOUT_S) == 0, worker.describe()
    assert "worker stopped" in worker.messages()
