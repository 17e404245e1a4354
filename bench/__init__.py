"""Harnesses that measure Ferry from the outside, over real processes and a real Postgres:
the benchmark (`python -m bench`, run.py) and the chaos harness (chaos.py)."""
