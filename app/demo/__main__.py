"""Run the demo upstream: ``python -m app.demo [--host 127.0.0.1] [--port 8099]``."""

from __future__ import annotations

import argparse

import uvicorn

from app.config import get_settings
from app.demo.upstream import create_app
from app.logs import configure_logging


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m app.demo",
        description="Deterministic OpenAI-compatible chat-completions server for local runs.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=8099, help="port to bind (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    configure_logging(get_settings().log_level)
    uvicorn.run(create_app(), host=args.host, port=args.port, log_config=None)


if __name__ == "__main__":
    main()
