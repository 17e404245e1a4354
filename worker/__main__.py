"""`python -m worker`: the same as `ferry worker` (see app/commands.py)."""

from __future__ import annotations

from app.commands import main

if __name__ == "__main__":
    main(prog="python -m worker", only="worker")
