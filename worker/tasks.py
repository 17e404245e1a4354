"""procrastinate tasks run by the worker.

Background and flex responses are deferred here; see `worker.__main__` for the process.
"""

from __future__ import annotations
