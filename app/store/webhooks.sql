-- Webhook endpoints and deliveries (0010), loaded by name (`-- name: x`). Every endpoint
-- query is scoped to its owner: another API key's endpoint is not found.

-- name: insert_endpoint
INSERT INTO webhook_endpoints (id, owner, name, url, event_types, signing_secret)
VALUES (%(id)s, %(owner)s, %(name)s, %(url)s, %(event_types)s, %(signing_secret)s)
RETURNING *;

-- name: get_endpoint
SELECT * FROM webhook_endpoints WHERE id = %(id)s AND owner = %(owner)s;

-- name: list_endpoints
-- Newest first; after %(after)s (an endpoint of the owner's), when given.
SELECT e.* FROM webhook_endpoints AS e
 WHERE e.owner = %(owner)s
   AND (%(after)s::text IS NULL
        OR (e.created_at, e.id) < (SELECT a.created_at, a.id FROM webhook_endpoints AS a
                                    WHERE a.id = %(after)s AND a.owner = %(owner)s))
 ORDER BY e.created_at DESC, e.id DESC
 LIMIT %(limit)s;

-- name: update_endpoint
-- What is given replaces what is there; `updated_at` moves only when something changed.
WITH old AS (
    SELECT * FROM webhook_endpoints WHERE id = %(id)s AND owner = %(owner)s FOR UPDATE
), new AS (
    SELECT old.id,
           coalesce(%(name)s, old.name) AS name,
           coalesce(%(url)s, old.url) AS url,
           coalesce(%(event_types)s::text[], old.event_types) AS event_types
      FROM old
)
UPDATE webhook_endpoints AS e
   SET name = new.name, url = new.url, event_types = new.event_types,
       updated_at = CASE WHEN (new.name, new.url, new.event_types)
                              IS DISTINCT FROM (e.name, e.url, e.event_types)
                         THEN now() ELSE e.updated_at END
  FROM new
 WHERE e.id = new.id
RETURNING e.*;

-- name: rotate_secret
-- A new secret signs from now on; the old one signs too for %(keep_old_s)s seconds, if given.
UPDATE webhook_endpoints
   SET previous_secret = CASE WHEN %(keep_old_s)s::float8 IS NULL THEN NULL
                              ELSE signing_secret END,
       previous_secret_expires_at = CASE WHEN %(keep_old_s)s::float8 IS NULL THEN NULL
                                         ELSE now() + make_interval(secs => %(keep_old_s)s) END,
       signing_secret = %(signing_secret)s,
       updated_at = now()
 WHERE id = %(id)s AND owner = %(owner)s
RETURNING *;

-- name: delete_endpoint
-- Its deliveries go with it (ON DELETE CASCADE); a job still due for one finds nothing.
DELETE FROM webhook_endpoints WHERE id = %(id)s AND owner = %(owner)s RETURNING id;

-- name: insert_response_deliveries
-- One delivery of a response's ending to each of the owner's endpoints subscribed to its
-- event type, in the transaction that ends it. A delivery's id is derived from its endpoint
-- and event, so a second insert of the same event adds nothing (and defers no job).
INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, response_id, payload)
SELECT 'wh_' || left(encode(sha256(convert_to(e.id || ':' || %(event_id)s, 'UTF8')), 'hex'), 48),
       e.id, %(event_id)s, %(event_type)s, %(response_id)s, %(payload)s
  FROM webhook_endpoints AS e
 WHERE e.owner = %(owner)s AND %(event_type)s = ANY (e.event_types)
ON CONFLICT DO NOTHING
RETURNING id;

-- name: insert_test_delivery
INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, payload)
VALUES (%(id)s, %(endpoint_id)s, %(event_id)s, %(event_type)s, %(payload)s)
RETURNING id;

-- name: delivery_to_send
-- A delivery still pending, with where it goes and the secrets that sign it now. Its age is
-- the database's clock, as `created_at` is.
SELECT d.id, d.event_type, d.payload, d.attempts,
       extract(epoch FROM now() - d.created_at)::float8 AS age_s,
       e.url, e.signing_secret,
       CASE WHEN e.previous_secret_expires_at > now() THEN e.previous_secret END
           AS previous_secret
  FROM webhook_deliveries AS d
  JOIN webhook_endpoints AS e ON e.id = d.endpoint_id
 WHERE d.id = %(id)s AND d.status = 'pending';

-- name: record_attempt
-- One more attempt at a pending delivery, numbered after the last; delivered when
-- %(delivered)s. No row: the delivery is gone or no longer pending.
WITH attempt AS (
    INSERT INTO webhook_delivery_attempts (delivery_id, number, status_code, latency_ms, error)
    SELECT id, attempts + 1, %(status_code)s, %(latency_ms)s, %(error)s
      FROM webhook_deliveries
     WHERE id = %(id)s AND status = 'pending'
    RETURNING number
)
UPDATE webhook_deliveries AS d
   SET attempts = attempt.number, last_attempt_at = now(),
       status = CASE WHEN %(delivered)s THEN 'delivered' ELSE d.status END,
       ended_at = CASE WHEN %(delivered)s THEN now() END
  FROM attempt
 WHERE d.id = %(id)s
RETURNING d.attempts;

-- name: give_up_delivery
UPDATE webhook_deliveries SET status = 'failed', ended_at = now()
 WHERE id = %(id)s AND status = 'pending';
