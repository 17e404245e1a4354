"""The procrastinate application: the job queue, on the process's own connection pool."""

from __future__ import annotations

import procrastinate


def create_job_app() -> procrastinate.App:
    """A job app not yet opened; open it with `app.open_async(pool)` to share our pool."""
    return procrastinate.App(
        connector=procrastinate.PsycopgConnector(),
        import_paths=["worker.tasks"],
    )
