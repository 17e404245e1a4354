-- Retention: what the periodic clean-up deletes, loaded by name (`-- name: x`).
--
-- Every query deletes at most %(batch)s rows (responses, event logs, jobs) and returns how many
-- as `deleted`, so one run is many short transactions, never one long lock on a big table.
-- Rows another transaction has locked are skipped (SKIP LOCKED), not waited for: a later run
-- gets them, and the clean-up never queues behind the API or the worker.

-- name: delete_expired_responses
-- Terminal responses that ended more than %(age_s)s seconds ago; their steps and events go
-- with them (ON DELETE CASCADE). Only terminal rows: a queued or in_progress response is
-- live work however old it is. `completed_at` is when it ended; the rare terminal row without
-- one (e.g. written by hand) falls back to its last change. The items of theirs that
-- conversations hold are not deleted: they move onto their conversation rows (0010), in the
-- same statement.
WITH doomed AS (
    SELECT id
      FROM responses
     WHERE status IN {{terminal}}
       AND coalesce(completed_at, updated_at) < now() - make_interval(secs => %(age_s)s)
     LIMIT %(batch)s
       FOR UPDATE SKIP LOCKED
), kept AS (
    UPDATE conversation_items AS ci
       SET item = CASE ci.source WHEN 'input' THEN r.request -> 'input' -> ci.source_index
                                 ELSE r.output -> ci.source_index END,
           response_id = NULL, source = NULL, source_index = NULL
      FROM doomed, responses AS r
     WHERE r.id = doomed.id AND ci.response_id = r.id
), gone AS (
    DELETE FROM responses AS r
     USING doomed
     WHERE r.id = doomed.id
    RETURNING r.id
)
SELECT count(*) AS deleted FROM gone;

-- name: trim_expired_event_logs
-- The whole event log of terminal responses that ended more than %(age_s)s seconds ago; the
-- response and its steps stay (its output is on the row, so GET still works, only a streamed
-- replay does not). Batched by response, counting logs, not events. The row lock is the one
-- writers of a log take (`lock_response`), so a log is never trimmed under a writer.
WITH doomed AS (
    SELECT r.id
      FROM responses AS r
     WHERE r.status IN {{terminal}}
       AND coalesce(r.completed_at, r.updated_at) < now() - make_interval(secs => %(age_s)s)
       AND EXISTS (SELECT 1 FROM response_event_batches AS e WHERE e.response_id = r.id)
     LIMIT %(batch)s
       FOR UPDATE OF r SKIP LOCKED
), gone AS (
    DELETE FROM response_event_batches AS e
     USING doomed
     WHERE e.response_id = doomed.id
    RETURNING e.response_id
)
SELECT count(DISTINCT response_id) AS deleted FROM gone;

-- name: delete_expired_jobs
-- procrastinate jobs in a final status whose last event is more than %(age_s)s seconds old.
--
-- procrastinate_jobs has no timestamps of its own: procrastinate's triggers write one
-- procrastinate_events row per transition (deferred, started, succeeded, ...), so the newest
-- event is when the job reached its final status (or was last retried). This is the rule of
-- procrastinate's own `delete_old_jobs`, but with a per-job max() instead of its DISTINCT ON
-- over every job, and batched. A job without any event (never deferred through procrastinate)
-- has max() NULL and is kept, as procrastinate's inner join keeps it. 'aborting' is legacy
-- (unused since procrastinate 3.0) and left alone.
--
-- Deleting is valid under procrastinate's schema: procrastinate_events cascades;
-- procrastinate_periodic_defers.job_id has no ON DELETE action, but procrastinate's BEFORE
-- DELETE trigger (procrastinate_unlink_periodic_defers_v1) sets it to NULL first; worker_id
-- points from the job to a worker, not at it. responses.job_id is not a foreign key.
--
-- A job of a response still queued or in_progress is kept whatever its status. Normally such
-- a job is 'todo' or 'doing' and the status filter already excludes it; but a job can end
-- 'failed' with its response left running (the task raised before the row was finished), and
-- a cancel of that response still looks its job up by `responses.job_id`. The anti-join only
-- reads active responses, the rows `responses_active_idx` covers.
WITH doomed AS (
    SELECT j.id
      FROM procrastinate_jobs AS j
     WHERE j.status IN ('succeeded', 'failed', 'cancelled', 'aborted')
       AND (SELECT max(ev.at) FROM procrastinate_events AS ev WHERE ev.job_id = j.id)
           < now() - make_interval(secs => %(age_s)s)
       AND NOT EXISTS (
               SELECT 1
                 FROM responses AS r
                WHERE r.job_id = j.id
                  AND r.status IN {{active}}
           )
     LIMIT %(batch)s
       FOR UPDATE OF j SKIP LOCKED
), gone AS (
    DELETE FROM procrastinate_jobs AS j
     USING doomed
     WHERE j.id = doomed.id
    RETURNING j.id
)
SELECT count(*) AS deleted FROM gone;

-- name: delete_expired_webhook_deliveries
-- Webhook deliveries that ended (delivered or given up) more than %(age_s)s seconds ago, with
-- their attempts (ON DELETE CASCADE). A pending delivery is live work however old it is.
WITH doomed AS (
    SELECT id
      FROM webhook_deliveries
     WHERE status <> 'pending' AND ended_at < now() - make_interval(secs => %(age_s)s)
     LIMIT %(batch)s
       FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM webhook_deliveries AS d
     USING doomed
     WHERE d.id = doomed.id
    RETURNING d.id
)
SELECT count(*) AS deleted FROM gone;
