"""The migration runner: everything once, in order, even with several processes at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
import pytest

from app.store.migrate import PROCRASTINATE_STEP, apply_migrations
from tests.support.database import EXPECTED_MIGRATIONS, applied_migrations, scratch_database


def test_concurrent_runners_apply_each_migration_once(postgres_admin_url: str) -> None:
    async def four_at_once(url: str) -> list[list[str]]:
        return await asyncio.gather(*(apply_migrations(url) for _ in range(4)))

    with scratch_database(postgres_admin_url) as url:
        results = asyncio.run(four_at_once(url))
        # Exactly one runner did the work; the others found nothing pending.
        assert sorted(results, key=len) == [[], [], [], EXPECTED_MIGRATIONS]
        assert applied_migrations(url) == EXPECTED_MIGRATIONS
        assert asyncio.run(apply_migrations(url)) == []
        with psycopg.connect(url) as conn:
            tables = {
                name
                for (name,) in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                ).fetchall()
            }
        expected = {"responses", "response_steps", "response_event_batches", "procrastinate_jobs"}
        assert expected <= tables


def test_a_failing_migration_is_rolled_back_and_not_recorded(
    postgres_admin_url: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_good.sql").write_text("CREATE TABLE good (id int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half (id int); SELECT no_such_fn();")
    with scratch_database(postgres_admin_url) as url:
        with pytest.raises(psycopg.errors.UndefinedFunction):
            asyncio.run(apply_migrations(url, tmp_path))
        assert applied_migrations(url) == [PROCRASTINATE_STEP, "0001_good"]
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT to_regclass('half')").fetchone() == (None,)
