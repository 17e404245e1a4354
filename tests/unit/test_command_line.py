"""The `ferry` command line: every command, and every setting it reads as an option whose
help is the setting's description and names its environment variable."""

from __future__ import annotations

import tomllib

import pytest

from app.commands import ALL_SETTINGS, COMMANDS, DATABASE_SETTINGS, build_parser
from app.config import ENVIRONMENT_ONLY_SETTINGS, Settings
from app.setting_options import given_settings
from tests.support import PROJECT_ROOT


def help_of(capsys: pytest.CaptureFixture[str], *words: str, only: str | None = None) -> str:
    """What `--help` prints, its white space folded (argparse wraps lines)."""
    parser = build_parser("ferry", only=only)
    with pytest.raises(SystemExit) as info:
        parser.parse_args([*words, "--help"])
    assert info.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_the_ferry_script_is_the_command_line() -> None:
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"] == {"ferry": "app.commands:main"}


def test_ferry_has_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of(capsys)
    for name in ("serve", "worker", "migrate", "dev", "keys"):
        assert f" {name} " in text


def test_every_setting_has_a_description() -> None:
    assert [name for name, field in Settings.model_fields.items() if not field.description] == []


@pytest.mark.parametrize(
    ("words", "only", "settings"),
    [
        (["serve"], None, ALL_SETTINGS),
        (["worker"], None, ALL_SETTINGS),
        ([], "worker", ALL_SETTINGS),  # python -m worker
        (["dev"], None, ALL_SETTINGS),
        (["migrate"], None, DATABASE_SETTINGS),
        (["keys", "create"], None, DATABASE_SETTINGS),
        (["keys", "list"], None, DATABASE_SETTINGS),
        (["keys", "revoke"], None, DATABASE_SETTINGS),
    ],
)
def test_help_lists_each_setting_with_its_variable(
    capsys: pytest.CaptureFixture[str], words: list[str], only: str | None, settings: list[str]
) -> None:
    text = help_of(capsys, *words, only=only)
    for name in settings:
        variable = name.upper()
        if name in ENVIRONMENT_ONLY_SETTINGS:
            assert f"--{name.replace('_', '-')}" not in text  # `ps` would show a secret
            assert variable in text  # named as environment only
            continue
        description = " ".join((Settings.model_fields[name].description or "").split())
        assert f"--{name.replace('_', '-')} {variable}" in text
        assert f"{variable} {description} [env {variable}; default " in text


def test_commands_keep_their_own_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert "--no-migrate" in help_of(capsys, "serve")
    text = help_of(capsys, "keys", "create")
    for option in ("--name", "--expires", "--max-concurrent-responses", "--max-requests-per-"):
        assert option in text


def test_options_become_settings_and_old_spellings_still_work() -> None:
    args = build_parser("python -m worker", only="worker").parse_args(
        ["--concurrency", "7", "--upstream-timeout-s", "12.5"]
    )
    given = given_settings(args)
    assert given == {"worker_concurrency": "7", "upstream_timeout_s": "12.5"}
    settings = Settings(**given)  # type: ignore[arg-type]
    assert (settings.worker_concurrency, settings.upstream_timeout_s) == (7, 12.5)


def test_each_command_is_one_of_ferrys() -> None:
    assert sorted(command.name for command in COMMANDS) == [
        "dev",
        "keys",
        "migrate",
        "serve",
        "worker",
    ]
