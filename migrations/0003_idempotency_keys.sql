-- A create sent again with the same Idempotency-Key (per API key) returns the response the
-- first one made, for IDEMPOTENCY_TTL_S; the request digest tells a retry from a new request.
CREATE TABLE idempotency_keys (
    owner          text NOT NULL,
    key            text NOT NULL,
    request_digest text NOT NULL,
    response_id    text NOT NULL REFERENCES responses (id) ON DELETE CASCADE,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
CREATE INDEX responses_queued_owner_idx ON responses (owner) WHERE status = 'queued' AND background;
