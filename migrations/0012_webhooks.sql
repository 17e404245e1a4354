-- Webhook endpoints, the events delivered to them, and every attempt at a delivery.

-- An endpoint belongs to the owner of the API key that made it (as responses do). Its
-- signing secret is kept as it is: Ferry signs with it, so it cannot keep a digest instead.
-- A rotation may leave the previous secret signing too, until `previous_secret_expires_at`.
CREATE TABLE webhook_endpoints (
    id                         text PRIMARY KEY,
    owner                      text NOT NULL,
    name                       text NOT NULL,
    url                        text NOT NULL,
    event_types                text[] NOT NULL,
    signing_secret             text NOT NULL,
    previous_secret            text,
    previous_secret_expires_at timestamptz,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now()
);

-- Listing an owner's endpoints newest first, and finding those an ending notifies.
CREATE INDEX webhook_endpoints_owner_idx ON webhook_endpoints (owner, created_at DESC, id DESC);

-- One event for one endpoint. `id` is the `webhook-id` header, the same on every attempt;
-- `event_id` the payload's `id`, the same for every endpoint the event goes to. `payload` is
-- the body as sent, byte for byte, so each attempt signs the same text.
CREATE TABLE webhook_deliveries (
    id              text PRIMARY KEY,
    endpoint_id     text NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id        text NOT NULL,
    event_type      text NOT NULL,
    response_id     text,  -- none for a test event; not a foreign key: the event outlives it
    payload         text NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_attempt_at timestamptz,
    ended_at        timestamptz,  -- when it was delivered, or given up on
    UNIQUE (endpoint_id, event_id)
);

CREATE INDEX webhook_deliveries_response_idx ON webhook_deliveries (response_id)
    WHERE response_id IS NOT NULL;

-- Every attempt at a delivery: what the receiver answered (or why there was no answer) and
-- how long it took.
CREATE TABLE webhook_delivery_attempts (
    delivery_id  text NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    number       integer NOT NULL,
    attempted_at timestamptz NOT NULL DEFAULT now(),
    status_code  integer,
    latency_ms   double precision NOT NULL,
    error        text,
    PRIMARY KEY (delivery_id, number)
);
