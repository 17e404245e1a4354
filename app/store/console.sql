-- What the operator console reads (and its one secret), loaded by name (`-- name: x`).
-- Read-only but for the session secret: the console acts on responses through the API's
-- own paths (cancel, delete).

-- name: status_counts
-- Responses created in the last day by status, and how many of them in the last hour.
SELECT status,
       count(*) FILTER (WHERE created_at > now() - interval '1 hour') AS last_hour,
       count(*) AS last_day
  FROM responses
 WHERE created_at > now() - interval '1 day'
 GROUP BY status;

-- name: queue_states
-- Jobs waiting in each queue, and how long the longest has waited since it was (re)deferred:
-- procrastinate writes an event at each transition, and jobs have no timestamp of their own.
SELECT q.queue_name AS queue,
       count(j.id) AS depth,
       extract(epoch FROM now() - min(waiting.since))::float8 AS oldest_s
  FROM unnest(%(queues)s::text[]) WITH ORDINALITY AS q (queue_name, position)
  LEFT JOIN procrastinate_jobs AS j ON j.queue_name = q.queue_name AND j.status = 'todo'
  LEFT JOIN LATERAL (SELECT max(e.at) AS since
                       FROM procrastinate_events AS e
                      WHERE e.job_id = j.id) AS waiting ON true
 GROUP BY q.queue_name, q.position
 ORDER BY q.position;

-- name: inline_running
-- Responses an API process runs itself (it holds their lease), newest first.
SELECT id, owner, model, stream, lease_owner, lease_expires_at, created_at, started_at,
       count(*) OVER () AS total
  FROM responses
 WHERE status = 'in_progress' AND lease_owner IS NOT NULL
 ORDER BY created_at DESC
 LIMIT %(limit)s;

-- name: workers
-- Every worker procrastinate knows, with the response jobs it is running.
SELECT w.id, w.last_heartbeat,
       extract(epoch FROM now() - w.last_heartbeat)::float8 AS silent_s,
       coalesce(jsonb_agg(jsonb_build_object('job_id', j.id, 'queue', j.queue_name,
                                             'response_id', j.args ->> 'response_id',
                                             'attempts', j.attempts)
                          ORDER BY j.id) FILTER (WHERE j.id IS NOT NULL),
                '[]') AS jobs
  FROM procrastinate_workers AS w
  LEFT JOIN procrastinate_jobs AS j ON j.worker_id = w.id AND j.status = 'doing'
 GROUP BY w.id
 ORDER BY w.id;

-- name: latest_failures
-- Found backwards along the index of ended responses (0004).
SELECT id, owner, status, model, service_tier, background, stream, created_at, completed_at,
       error, request ->> 'store' = 'false' AS not_kept
  FROM responses
 WHERE status = 'failed'
 ORDER BY coalesce(completed_at, updated_at) DESC
 LIMIT %(limit)s;

-- name: list_responses
-- A page of responses, newest first, by keyset: each page starts below the (created_at, id)
-- of the last row of the one before, along responses_created_idx (0011). A filter left
-- NULL does not apply.
SELECT id, owner, status, model, service_tier, background, stream, created_at, completed_at,
       error, request ->> 'store' = 'false' AS not_kept
  FROM responses
 WHERE (%(status)s::text IS NULL OR status = %(status)s::text)
   AND (%(model)s::text IS NULL OR model = %(model)s::text)
   AND (%(owners)s::text[] IS NULL OR owner = ANY (%(owners)s::text[])
        OR starts_with(owner, %(owner_prefix)s::text))
   AND (%(background)s::boolean IS NULL OR background = %(background)s::boolean)
   AND (%(stream)s::boolean IS NULL OR stream = %(stream)s::boolean)
   AND (%(flex)s::boolean IS NULL OR (service_tier = 'flex') = %(flex)s::boolean)
   AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s::timestamptz)
   AND (%(id_prefix)s::text IS NULL OR starts_with(id, %(id_prefix)s::text))
   AND (%(before_at)s::timestamptz IS NULL
        OR (created_at, id) < (%(before_at)s::timestamptz, %(before_id)s::text))
 ORDER BY created_at DESC, id DESC
 LIMIT %(limit)s;

-- name: owners_of_keys
-- The owners whose database keys have this name, or a prefix starting with this text.
SELECT DISTINCT owner FROM api_keys
 WHERE name = %(text)s OR starts_with(prefix, %(text)s);

-- name: keys_of_owners
-- What tells each owner's database keys apart: their name and prefixes (never the keys).
SELECT owner, name, array_agg(prefix ORDER BY created_at) AS prefixes
  FROM api_keys
 WHERE owner = ANY (%(owners)s::text[])
 GROUP BY owner, name;

-- name: response
SELECT * FROM responses WHERE id = %(id)s;

-- name: steps
SELECT * FROM response_steps WHERE response_id = %(id)s ORDER BY ordinal;

-- name: job_events
-- Every transition of every job that ran the response (a recovery queues a new job, so there
-- may be several), oldest first. Jobs are found by their argument: there is no index on it,
-- and a scan of the jobs table (finished jobs are deleted by retention) is fine for a page
-- an operator opens.
SELECT j.id AS job_id, j.queue_name AS queue, e.type::text AS type, e.at
  FROM procrastinate_jobs AS j
  JOIN procrastinate_events AS e ON e.job_id = j.id
 WHERE j.task_name = %(task_name)s AND j.args ->> 'response_id' = %(id)s
 ORDER BY e.at, e.id;

-- name: event_log_size
SELECT count(*) AS batches, coalesce(max(last_sequence_number), -1) AS last
  FROM response_event_batches WHERE response_id = %(id)s;

-- name: insert_console_secret
-- The first process that needs the secret makes it; any other finds it made (0011).
INSERT INTO console_secret (id, secret) VALUES (1, %(candidate)s)
ON CONFLICT (id) DO NOTHING;

-- name: get_console_secret
SELECT secret FROM console_secret WHERE id = 1;
