"""`python -m app serve | worker | migrate | dev | keys`: the same as `ferry` (see
app/commands.py)."""

from __future__ import annotations

from app.commands import main

if __name__ == "__main__":
    main(prog="python -m app")
