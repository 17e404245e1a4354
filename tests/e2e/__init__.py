"""Tests against real Postgres, real uvicorn servers and real processes."""
