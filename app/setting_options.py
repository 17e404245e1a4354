"""Settings on the command line: an option for each setting a command reads, its help made
from the setting's own description (so the two cannot drift), and a bad value — from an
option or from the environment — reported as one line naming the variable.

    --upstream-timeout-s UPSTREAM_TIMEOUT_S
                        Read timeout for the upstream stream, in seconds.
                        [env UPSTREAM_TIMEOUT_S; default 300.0]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, NoReturn

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from app.config import ENVIRONMENT_ONLY_SETTINGS, SECRET_SETTINGS, Settings

#: Exit status of a process refused at start for a bad setting (argparse's, for bad usage).
BAD_SETTING_EXIT = 2
# An offending value longer than this is not repeated in the message: the name says enough.
_LONGEST_ECHO = 80


def option_of(name: str) -> str:
    return "--" + name.replace("_", "-")


def variable_of(name: str) -> str:
    return name.upper()


def _default_text(name: str) -> str:
    default = Settings.model_fields[name].default
    return "empty" if default == "" else str(default)


def add_setting_options(
    parser: argparse.ArgumentParser,
    names: Iterable[str],
    *,
    aliases: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """An option for each setting in `names`, in a group of its own; settings that may hold
    secrets are named in the group's description instead (environment only)."""
    names = list(names)
    hidden = [variable_of(name) for name in names if name in ENVIRONMENT_ONLY_SETTINGS]
    description = "Each option overrides the environment variable named in its help."
    if hidden:
        description += f" From the environment only (secrets): {', '.join(hidden)}."
    group = parser.add_argument_group("settings", description)
    for name in names:
        if name in ENVIRONMENT_ONLY_SETTINGS:
            continue
        field = Settings.model_fields[name]
        assert field.description, f"setting {name} has no description"
        text = f"{field.description} [env {variable_of(name)}; default {_default_text(name)}]"
        group.add_argument(
            option_of(name),
            *(aliases or {}).get(name, ()),
            dest=name,
            metavar=variable_of(name),
            default=None,
            help=text.replace("%", "%%"),  # argparse formats help with %
        )


def given_settings(args: argparse.Namespace) -> dict[str, str]:
    """The settings given as options (the others come from the environment or defaults)."""
    return {
        name: value
        for name in Settings.model_fields
        if (value := getattr(args, name, None)) is not None
    }


def load_settings(prog: str, given: Mapping[str, str]) -> Settings:
    """The process's settings; on a bad value, one line a variable on stderr and exit 2."""
    values: dict[str, Any] = dict(given)  # strings: pydantic reads them as the environment
    try:
        return Settings(**values)
    except ValidationError as exc:
        refuse(prog, describe_errors(exc, given))


def refuse(prog: str, lines: Iterable[str]) -> NoReturn:
    for line in lines:
        print(f"{prog}: {line}", file=sys.stderr)
    sys.exit(BAD_SETTING_EXIT)


def describe_errors(exc: ValidationError, given: Collection[str] = ()) -> list[str]:
    """One line for each setting in error: its variable (and option, if it came from one),
    what is wrong, and the value when it is short and cannot be a secret."""
    lines: list[str] = []
    seen: set[str] = set()
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else ""
        if name in seen:
            continue
        seen.add(name)
        message = _message(error)
        if not name:  # a check across settings: its message names them
            lines.append(f"bad settings: {message}")
            continue
        where = variable_of(name)
        if name in given:
            where += f" (from {option_of(name)})"
        lines.append(f"bad setting {where}: {message}{_echo(name, error)}")
    return lines


def _message(error: ErrorDetails) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    return " ".join(message.split())  # one line, whatever the message held


def _echo(name: str, error: ErrorDetails) -> str:
    value = error.get("input")
    if name in SECRET_SETTINGS or not isinstance(value, str | int | float):
        return ""
    text = str(value)
    if len(text) > _LONGEST_ECHO or text in str(error["msg"]):
        return ""
    return f" (got {text!r})"
