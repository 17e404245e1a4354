-- Every query Ferry runs against its own tables, loaded by name (`-- name: x`).

-- name: insert_response
-- A response inserted `in_progress` (an inline run) has started as it is inserted.
-- Its clock is `created_at` when the row was known before it was written, else now().
INSERT INTO responses (id, owner, status, request, model, service_tier, background, stream,
                       previous_response_id, lease_owner, lease_expires_at, started_at, job_id,
                       conversation_id, conversation_position, created_at, updated_at)
VALUES (%(id)s, %(owner)s, %(status)s, %(request)s, %(model)s, %(service_tier)s, %(background)s,
        %(stream)s, %(previous_response_id)s, %(lease_owner)s,
        CASE WHEN %(lease_owner)s::text IS NULL THEN NULL
             ELSE coalesce(%(created_at)s::timestamptz, now())
                  + make_interval(secs => %(lease_ttl_s)s) END,
        CASE WHEN %(status)s::text = 'in_progress'
             THEN coalesce(%(created_at)s::timestamptz, now()) END,
        %(job_id)s, %(conversation_id)s, %(conversation_position)s,
        coalesce(%(created_at)s::timestamptz, now()), coalesce(%(created_at)s::timestamptz, now()))
RETURNING *;

-- name: get_response
SELECT * FROM responses WHERE id = %(id)s AND owner = %(owner)s;

-- name: get_response_any_owner
-- For the worker, which runs whatever it is given, whoever owns it.
SELECT * FROM responses WHERE id = %(id)s;

-- name: mark_in_progress
UPDATE responses
   SET status = 'in_progress', started_at = coalesce(started_at, now()), updated_at = now()
 WHERE id = %(id)s AND status IN {{active}}
RETURNING *;

-- name: renew_lease
UPDATE responses
   SET lease_expires_at = now() + make_interval(secs => %(lease_ttl_s)s), updated_at = now()
 WHERE id = %(id)s AND lease_owner = %(lease_owner)s AND status IN {{active}}
RETURNING id;

-- name: finish_response
-- Only a response still running can end; the first terminal state wins.
UPDATE responses
   SET status = %(status)s, output = %(output)s, usage = %(usage)s,
       usage_missing = %(usage_missing)s, error = %(error)s,
       incomplete_details = %(incomplete_details)s, upstream_refusal = %(upstream_refusal)s,
       completed_at = now(), updated_at = now(), lease_owner = NULL, lease_expires_at = NULL
 WHERE id = %(id)s AND status IN {{active}}
RETURNING *;

-- name: forget_content
-- What a `store: false` response held of its content goes once it has ended, in the
-- transaction that ends it: its input (the request, cut down to `store`), its output, its
-- steps and its event log. Kept: id, owner, model, tier, status, usage, error, timestamps.
WITH forgotten_steps AS (DELETE FROM response_steps WHERE response_id = %(id)s),
     forgotten_events AS (DELETE FROM response_event_batches WHERE response_id = %(id)s)
UPDATE responses SET request = %(request)s, output = NULL
 WHERE id = %(id)s AND status IN {{terminal}};

-- name: start_step
-- Idempotent: tried again after a lost connection, a step that was written stays as it is.
INSERT INTO response_steps (response_id, ordinal, kind, status, request)
VALUES (%(response_id)s, %(ordinal)s, %(kind)s, 'in_progress', %(request)s)
ON CONFLICT (response_id, ordinal) DO NOTHING;

-- name: start_model_step
-- As start_step, for a model call, committed without waiting for the WAL flush
-- (`synchronous_commit` off for this statement's own transaction). A model call has no
-- effect to guard, and nothing that follows it can be on disk without it: every later
-- commit that must be (an event of its turn logged, the step finished, the response ended)
-- flushes the WAL up to itself, this row included. Lost with a database crash before
-- then, its turn is redone, as one cut off.
INSERT INTO response_steps (response_id, ordinal, kind, status, request)
SELECT %(response_id)s, %(ordinal)s, %(kind)s, 'in_progress', %(request)s
 WHERE set_config('synchronous_commit', 'off', true) IS NOT NULL
ON CONFLICT (response_id, ordinal) DO NOTHING;

-- name: finish_step
UPDATE response_steps
   SET status = %(status)s, result = %(result)s, usage = %(usage)s, error = %(error)s,
       completed_at = now()
 WHERE response_id = %(response_id)s AND ordinal = %(ordinal)s;

-- name: list_steps
SELECT * FROM response_steps WHERE response_id = %(response_id)s ORDER BY ordinal;

-- name: lock_response
-- Serialises writers of one response's event log (the worker's flushes, a cancel).
SELECT id, status FROM responses WHERE id = %(id)s FOR UPDATE;

-- name: start_event_log
-- The first events of a response inserted in the same transaction: no one else can write
-- its log before that commits, so there is nothing to lock or check.
INSERT INTO response_event_batches
    (response_id, first_sequence_number, last_sequence_number, closed, codec, events)
VALUES (%(response_id)s, %(first)s, %(last)s, %(closed)s, %(codec)s, %(events)s);

-- name: append_event_batch
-- One flush of a response's event log, unless the log is closed (its terminal event is
-- written) or the batch would not follow the events already there: a batch that overlaps
-- them comes from a run that no longer owns the response. The caller holds the row lock
-- (`lock_response`), so writers of one log take turns, and this statement sees the last
-- one's rows. The notification goes out with the commit; tailers re-read from the log.
WITH log AS (
    SELECT coalesce(max(last_sequence_number), -1) AS last, coalesce(bool_or(closed), false) AS closed
      FROM response_event_batches
     WHERE response_id = %(response_id)s
), written AS (
    INSERT INTO response_event_batches
        (response_id, first_sequence_number, last_sequence_number, closed, codec, events)
    SELECT %(response_id)s, %(first)s, %(last)s, %(closed)s, %(codec)s, %(events)s
      FROM log
     WHERE NOT log.closed AND log.last < %(first)s
    RETURNING response_id
)
SELECT pg_notify('ferry_events', %(payload)s) FROM written;

-- name: last_sequence_number
SELECT coalesce(max(last_sequence_number), -1) AS last
  FROM response_event_batches WHERE response_id = %(response_id)s;

-- name: set_job_id
UPDATE responses SET job_id = %(job_id)s WHERE id = %(id)s;

-- name: delete_response
-- The items of it that conversations hold move onto their conversation rows first (0010):
-- a conversation keeps its items when a response that added them is deleted.
WITH kept AS (
    UPDATE conversation_items AS ci
       SET item = CASE ci.source WHEN 'input' THEN r.request -> 'input' -> ci.source_index
                                 ELSE r.output -> ci.source_index END,
           response_id = NULL, source = NULL, source_index = NULL
      FROM responses AS r
     WHERE r.id = %(id)s AND r.owner = %(owner)s AND ci.response_id = r.id
)
DELETE FROM responses WHERE id = %(id)s AND owner = %(owner)s RETURNING id;

-- name: queue_depth
SELECT count(*) AS depth FROM procrastinate_jobs
 WHERE queue_name = %(queue)s AND status = 'todo';

-- name: list_event_batches_after
-- The batches holding events after %(after)s; the first may also hold some before it.
SELECT codec, events FROM response_event_batches
 WHERE response_id = %(response_id)s AND last_sequence_number > %(after)s
 ORDER BY first_sequence_number;

-- name: record_step_items
-- Items a running step has finished so far, so GET can show them before the step ends.
UPDATE response_steps SET result = %(result)s
 WHERE response_id = %(response_id)s AND ordinal = %(ordinal)s AND status = 'in_progress';

-- name: find_idempotency_key
SELECT request_digest, response_id FROM idempotency_keys
 WHERE owner = %(owner)s AND key = %(key)s
   AND created_at > now() - make_interval(secs => %(ttl_s)s);

-- name: claim_idempotency_key
-- Claims the key for a new response, taking over an expired claim; no row: it is taken.
INSERT INTO idempotency_keys (owner, key, request_digest, response_id)
VALUES (%(owner)s, %(key)s, %(digest)s, %(response_id)s)
ON CONFLICT (owner, key) DO UPDATE
   SET request_digest = excluded.request_digest, response_id = excluded.response_id,
       created_at = now()
 WHERE idempotency_keys.created_at <= now() - make_interval(secs => %(ttl_s)s)
RETURNING key;

-- name: count_queued_background
SELECT count(*) FILTER (WHERE true) AS total,
       count(*) FILTER (WHERE owner = %(owner)s) AS mine
  FROM responses WHERE status = 'queued' AND background;

-- name: overrunning_jobs
-- Response jobs running longer than allowed, their worker alive or not.
SELECT j.id AS job_id, j.args ->> 'response_id' AS response_id
  FROM procrastinate_jobs j
 WHERE j.status = 'doing' AND j.task_name = %(task_name)s
   AND (SELECT max(e.at) FROM procrastinate_events e
         WHERE e.job_id = j.id AND e.type = 'started') < now() - make_interval(secs => %(max_run_s)s);

-- name: lapsed_inline_leases
-- Inline responses whose API process stopped renewing its lease: it died, or lost the database.
SELECT id FROM responses
 WHERE status = 'in_progress' AND lease_owner IS NOT NULL AND lease_expires_at < now()
 ORDER BY lease_expires_at
 LIMIT %(limit)s;

-- name: take_over_lease
UPDATE responses SET lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
 WHERE id = %(id)s AND status = 'in_progress' AND lease_owner IS NOT NULL
   AND lease_expires_at < now()
RETURNING id;

-- name: orphaned_responses
-- Responses still running that nothing runs any more: no unexpired inline lease, and no job
-- that waits or is held by a live worker. Every way of losing one (a job that ended while
-- its response did not, a job deleted by hand, a worker that died between two commits) ends
-- up here, whatever caused it.
SELECT r.id, r.recoveries, r.service_tier FROM responses r
 WHERE r.status IN {{active}}
   AND NOT (r.lease_owner IS NOT NULL AND r.lease_expires_at >= now())
   AND NOT EXISTS (
         SELECT 1 FROM procrastinate_jobs j
          WHERE j.id = r.job_id
            AND (j.status = 'todo'
                 OR (j.status = 'doing'
                     AND EXISTS (SELECT 1 FROM procrastinate_workers w
                                  WHERE w.id = j.worker_id
                                    AND w.last_heartbeat
                                        > now() - make_interval(secs => %(stall_s)s)))))
 ORDER BY r.updated_at
 LIMIT %(limit)s;

-- name: lock_orphan_sweep
-- One sweep at a time, to the end of its transaction: the next one's reads see the jobs the
-- last one queued, so no response is ever queued twice.
SELECT pg_advisory_xact_lock(%(key)s);

-- name: count_recovery
UPDATE responses
   SET recoveries = recoveries + 1, lease_owner = NULL, lease_expires_at = NULL,
       updated_at = now()
 WHERE id = %(id)s;

-- name: find_item
-- An item of one of the owner's responses, by id: in its output (once it has ended) or its
-- input; the newest response holding it wins. The rows holding the id are found first, by
-- the index on `response_item_ids` (0007): left to itself, the planner walks the owner's
-- responses newest first instead, which is slow for an old item.
WITH holders AS MATERIALIZED (
    SELECT created_at, request, output FROM responses
     WHERE owner = %(owner)s AND response_item_ids(request, output) @> ARRAY[%(item_id)s::text]
)
SELECT coalesce(jsonb_path_query_first(output, '$[*] ? (@.id == $id)', vars),
                jsonb_path_query_first(request -> 'input', '$[*] ? (@.id == $id)', vars)) AS item
  FROM holders, jsonb_build_object('id', %(item_id)s::text) AS vars
 ORDER BY created_at DESC
 LIMIT 1;

-- name: insert_sealing_key
-- The first process that needs the key makes it; any other finds it made (0008).
INSERT INTO reasoning_sealing_key (id, key) VALUES (1, %(candidate)s)
ON CONFLICT (id) DO NOTHING;

-- name: get_sealing_key
SELECT key FROM reasoning_sealing_key WHERE id = 1;
-- name: queue_stats
-- Jobs waiting in each queue, and how long the oldest has waited since it was last put
-- there (deferred, or retried): for the metrics scrape.
SELECT j.queue_name AS queue, count(*) AS depth,
       coalesce(extract(epoch FROM now() - min(queued.at)), 0)::float8 AS oldest_age_s
  FROM procrastinate_jobs j
  LEFT JOIN LATERAL (SELECT max(e.at) AS at FROM procrastinate_events e
                      WHERE e.job_id = j.id) queued ON true
 WHERE j.status = 'todo'
 GROUP BY j.queue_name;
