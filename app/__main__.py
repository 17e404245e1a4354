"""`python -m app migrate | serve | dev` — see README.md."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import uvicorn

from app.config import Settings, get_settings
from app.logs import configure_logging
from app.store.migrate import apply_migrations

log = logging.getLogger("app")


def migrate(settings: Settings) -> None:
    applied = asyncio.run(apply_migrations(settings.database_url))
    log.info("migrations up to date", extra={"applied_now": applied})


def serve(settings: Settings, *, run_migrations: bool) -> None:
    from app.http.server import FerryServer, build_app

    if run_migrations:
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
    )
    # uvicorn re-raises the signal that stopped it once shut down; a requested stop exits 0.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: sys.exit(0))
    FerryServer(config).run()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m app", description="Ferry")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply pending migrations and exit")
    serve_cmd = commands.add_parser("serve", help="run the API")
    serve_cmd.add_argument("--host", help="bind address (HOST)")
    serve_cmd.add_argument("--port", type=int, help="port (PORT)")
    serve_cmd.add_argument("--no-migrate", action="store_true", help="skip pending migrations")
    dev_cmd = commands.add_parser("dev", help="local run: database, API, worker, demo upstream")
    dev_cmd.add_argument("--port", type=int, help="API port (PORT)")
    args = parser.parse_args(argv)

    settings = get_settings()
    configure_logging(settings.log_level)
    if args.command == "dev":
        from app.dev import run_dev

        sys.exit(run_dev(settings, port=args.port))
    if not settings.database_url:
        parser.error("DATABASE_URL is not set (or use `python -m app dev`)")
    if args.command == "migrate":
        migrate(settings)
    elif args.command == "serve":
        overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
        serve(settings.model_copy(update=overrides), run_migrations=not args.no_migrate)


if __name__ == "__main__":
    main()
