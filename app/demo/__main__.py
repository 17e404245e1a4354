"""Run the demo upstream: ``python -m app.demo [--host 127.0.0.1] [--port 8099]``."""

from __future__ import annotations

import argparse

import uvicorn

from app.config import DEMO_UPSTREAM_PORT, get_settings
from app.demo.upstream import create_app
from app.logs import configure_logging

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m app.demo", description="The demo upstream.")
    parser.add_argument("--host", default="127.0.0.1", help="default: %(default)s")
    parser.add_argument("--port", type=int, default=DEMO_UPSTREAM_PORT, help="default: %(default)s")
    parser.add_argument(
        "--call-first-tool",
        action="store_true",
        help="a user message that names no offered tool calls the first one offered",
    )
    args = parser.parse_args()
    configure_logging(get_settings().log_level)
    app = create_app(call_first_tool=args.call_first_tool)
    uvicorn.run(app, host=args.host, port=args.port, log_config=None)
