-- The queries of API keys kept in the database, loaded by name (`-- name: x`).

-- name: insert_key
INSERT INTO api_keys (id, name, owner, prefix, digest, expires_at,
                      max_concurrent_responses, max_requests_per_minute, admin)
VALUES (%(id)s, %(name)s, %(owner)s, %(prefix)s, %(digest)s,
        -- NULL days: no expiry (NULL * interval is NULL).
        now() + %(expires_in_days)s::float8 * interval '1 day',
        %(max_concurrent_responses)s, %(max_requests_per_minute)s, %(admin)s)
RETURNING *;

-- name: list_keys
SELECT * FROM api_keys ORDER BY created_at, name;

-- name: active_keys_named
SELECT * FROM api_keys WHERE name = %(name)s AND revoked_at IS NULL ORDER BY created_at;

-- name: revoke_keys
-- By name (every key of it) or by prefix (that one key); a revoked key stays revoked.
UPDATE api_keys SET revoked_at = now()
 WHERE revoked_at IS NULL AND (name = %(target)s OR prefix = %(target)s)
RETURNING *;

-- name: find_key
SELECT * FROM api_keys WHERE digest = %(digest)s;

-- name: any_keys
-- Whether any key was ever made (revoked and expired ones count): if so, keys are required.
SELECT EXISTS (SELECT 1 FROM api_keys) AS any;

-- name: touch_key
UPDATE api_keys SET last_used_at = now() WHERE id = %(id)s;

-- name: count_request
-- One more request in the owner's current minute; a new minute starts again at 1.
INSERT INTO api_key_windows AS w (owner, minute, requests)
VALUES (%(owner)s, date_trunc('minute', now()), 1)
ON CONFLICT (owner) DO UPDATE
   SET requests = CASE WHEN w.minute = EXCLUDED.minute THEN w.requests + 1 ELSE 1 END,
       minute = EXCLUDED.minute
RETURNING requests,
          extract(epoch FROM minute + interval '1 minute' - now())::float8 AS seconds_left;

-- name: lock_owner
-- Held to the end of the transaction: creates of one owner count its running responses in
-- turn, so two cannot both take the last place.
SELECT pg_advisory_xact_lock(%(lock_class)s, hashtext(%(owner)s));

-- name: count_running
SELECT count(*) AS running FROM responses WHERE owner = %(owner)s AND status IN {{active}};
