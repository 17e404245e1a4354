"""What the tests share that is not a fixture: servers and processes to run, the SDK client,
scratch databases, the suite's settings, bounded waits, SSE reading, schema checks, and the
in-memory step store the unit tier drives the loop with.

Fixtures live in tests/e2e/conftest.py (and tests/unit/conftest.py) and are built from these
pieces.
"""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
