-- Retention looks for terminal responses by the time they ended.
CREATE INDEX responses_ended_idx ON responses ((coalesce(completed_at, updated_at)))
    WHERE status IN ('completed', 'failed', 'incomplete', 'cancelled');
