"""The worker's periodic tasks, as the blueprint registers them (nothing is run)."""

from __future__ import annotations

from app.config import Settings
from worker.tasks import build_blueprint


def test_the_worker_schedules_retention_hourly_and_recovery_often() -> None:
    blueprint = build_blueprint(Settings(recovery_interval_s=3))
    schedules = {p.task.name: p.cron for p in blueprint.periodic_registry.periodic_tasks.values()}
    assert schedules == {"apply_retention": "17 * * * *", "recover": "* * * * * */3"}
