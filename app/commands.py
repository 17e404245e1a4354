"""`ferry`: every Ferry process from one command line (also `python -m app`; the worker also
as `python -m worker`). See README.md, Commands.

    ferry serve [--no-migrate]      the API
    ferry worker                    a worker: runs background and flex responses
    ferry migrate                   applies pending migrations and exits
    ferry dev                       a local run: database, demo upstream, worker and API
    ferry keys create|list|revoke   API keys kept in the database

Every setting a command reads is also an option of it (`--upstream-timeout-s 30` for
UPSTREAM_TIMEOUT_S), and the settings are checked before anything starts: a bad value is one
line on stderr naming its variable, and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from app import key_commands
from app.config import Settings
from app.logs import configure_logging
from app.setting_options import add_setting_options, given_settings, load_settings, refuse

log = logging.getLogger("app")

#: What every process that serves or runs responses reads: all of the settings.
ALL_SETTINGS = tuple(Settings.model_fields)
#: What a command that only talks to the database reads.
DATABASE_SETTINGS = ("database_url", "log_level")


#: Adds a command's own arguments to its parser, calling the function it is given on each
#: parser that takes the command's setting options (the parser itself, or its actions').
AddArguments = Callable[[argparse.ArgumentParser, Callable[[argparse.ArgumentParser], None]], None]


def _settings_here(
    parser: argparse.ArgumentParser, add_settings: Callable[[argparse.ArgumentParser], None]
) -> None:
    add_settings(parser)


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    run: Callable[[argparse.Namespace, Settings], int | None]
    settings: Sequence[str]
    add_arguments: AddArguments = _settings_here
    needs_database: bool = True
    # Older spellings of setting options, kept working.
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def add_settings(self, parser: argparse.ArgumentParser) -> None:
        add_setting_options(parser, self.settings, aliases=self.aliases)

    @property
    def usage(self) -> str | None:
        # Dozens of setting options: the usage line names them as a whole, the help each.
        return "%(prog)s [options]" if len(self.settings) > len(DATABASE_SETTINGS) else None


def migrate(settings: Settings) -> None:
    from app.store.migrate import apply_migrations

    applied = asyncio.run(apply_migrations(settings.database_url))
    log.info("migrations up to date", extra={"applied_now": applied})


def _run_migrate(args: argparse.Namespace, settings: Settings) -> None:
    migrate(settings)


def _serve_arguments(
    parser: argparse.ArgumentParser, add_settings: Callable[[argparse.ArgumentParser], None]
) -> None:
    parser.add_argument(
        "--no-migrate", action="store_true", help="do not apply pending migrations first"
    )
    add_settings(parser)


def _run_serve(args: argparse.Namespace, settings: Settings) -> None:
    import uvicorn

    from app.http.server import FerryServer, build_app

    if not args.no_migrate:
        migrate(settings)
    config = uvicorn.Config(
        build_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        # Bounded graceful shutdown on SIGTERM: open streams get this long to finish.
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
        lifespan="on",
        # WebSocket mode: wsproto, whose refusal of a handshake (401 before the upgrade) is
        # clean; uvicorn's websockets-sansio logs each one as an error.
        ws="wsproto",
    )
    # uvicorn re-raises the signal that stopped it once shut down; a requested stop exits 0.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: sys.exit(0))
    FerryServer(config).run()


def _run_dev(args: argparse.Namespace, settings: Settings) -> int:
    from app.dev import run_dev

    return run_dev(settings, given=given_settings(args))


def _run_worker(args: argparse.Namespace, settings: Settings) -> None:
    # The one place the command line reaches into the worker package: it starts every
    # Ferry process, the worker included.
    from worker.process import run_worker

    try:
        import uvloop
    except ImportError:  # uvicorn's [standard] extra brings it, where the platform has it
        asyncio.run(run_worker(settings))
    else:
        # As the API runs under uvicorn: the worker's event loop carries every token of
        # every background response, and uvloop's I/O costs a fraction of asyncio's.
        uvloop.run(run_worker(settings))


COMMANDS = (
    Command(
        "serve",
        "run the API",
        _run_serve,
        ALL_SETTINGS,
        add_arguments=_serve_arguments,
    ),
    Command(
        "worker",
        "run a worker: background and flex responses",
        _run_worker,
        ALL_SETTINGS,
        aliases={"worker_concurrency": ("--concurrency",)},
    ),
    Command("migrate", "apply pending migrations and exit", _run_migrate, DATABASE_SETTINGS),
    Command(
        "dev",
        "local run: database, API, worker, demo upstream",
        _run_dev,
        ALL_SETTINGS,
        needs_database=False,
    ),
    Command(
        "keys",
        "API keys kept in the database: create, list, revoke",
        key_commands.run,
        DATABASE_SETTINGS,
        add_arguments=key_commands.add_arguments,
    ),
)


def _add_command(parser: argparse.ArgumentParser, command: Command) -> None:
    command.add_arguments(parser, command.add_settings)
    parser.set_defaults(command=command)


def build_parser(prog: str, *, only: str | None = None) -> argparse.ArgumentParser:
    """The command line: every command as a subcommand, or just `only` (`python -m worker`)."""
    if only is not None:
        command = next(c for c in COMMANDS if c.name == only)
        parser = argparse.ArgumentParser(prog=prog, description=command.help, usage=command.usage)
        _add_command(parser, command)
        return parser
    parser = argparse.ArgumentParser(prog=prog, description="Ferry: the Responses API, durable.")
    subcommands = parser.add_subparsers(dest="command_name", required=True, metavar="COMMAND")
    for command in COMMANDS:
        _add_command(
            subcommands.add_parser(
                command.name, help=command.help, description=command.help, usage=command.usage
            ),
            command,
        )
    return parser


def main(argv: list[str] | None = None, *, prog: str = "ferry", only: str | None = None) -> None:
    parser = build_parser(prog, only=only)
    args = parser.parse_args(argv)
    command: Command = args.command
    label = prog if only else f"{prog} {command.name}"
    settings = load_settings(label, given_settings(args))
    configure_logging(settings.log_level)
    if command.needs_database and not settings.database_url:
        refuse(label, ["DATABASE_URL is not set (or use the dev command)"])
    sys.exit(command.run(args, settings))
