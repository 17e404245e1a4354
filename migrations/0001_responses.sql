-- Ferry's own tables. procrastinate's schema is installed by the runner before this file.

CREATE TABLE responses (
    id                   text PRIMARY KEY,
    -- Who created it: a digest of the API key (never the key itself), or '' when the API is open.
    owner                text NOT NULL,
    status               text NOT NULL CHECK (status IN
                             ('queued', 'in_progress', 'completed', 'failed', 'incomplete', 'cancelled')),
    -- The create request as validated, echoed back in every Response object.
    request              jsonb NOT NULL,
    model                text NOT NULL,
    service_tier         text NOT NULL DEFAULT 'auto',
    background           boolean NOT NULL DEFAULT false,
    stream               boolean NOT NULL DEFAULT false,
    previous_response_id text,
    output               jsonb,
    usage                jsonb,
    -- True when the upstream sent content but no usage: the tokens were not counted.
    usage_missing        boolean NOT NULL DEFAULT false,
    error                jsonb,
    incomplete_details   jsonb,
    -- Inline work holds a lease; a lapsed lease means the process running it died.
    lease_owner          text,
    lease_expires_at     timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    started_at           timestamptz,
    completed_at         timestamptz,
    updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX responses_owner_created_idx ON responses (owner, created_at DESC);
CREATE INDEX responses_active_idx ON responses (status, lease_expires_at)
    WHERE status IN ('queued', 'in_progress');

-- One row a unit of work: a model turn or a server-side tool call, written at start and end.
CREATE TABLE response_steps (
    response_id  text NOT NULL REFERENCES responses (id) ON DELETE CASCADE,
    ordinal      integer NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('model_call', 'tool_call')),
    status       text NOT NULL CHECK (status IN
                     ('in_progress', 'completed', 'failed', 'incomplete', 'cancelled')),
    request      jsonb,
    -- For a finished step: {"items": [...output items...], ...} — the output is assembled from these.
    result       jsonb,
    usage        jsonb,
    error        jsonb,
    started_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    PRIMARY KEY (response_id, ordinal)
);

-- The event log that background streams are tailed and resumed from.
CREATE TABLE response_events (
    response_id     text NOT NULL REFERENCES responses (id) ON DELETE CASCADE,
    sequence_number integer NOT NULL,
    type            text NOT NULL,
    data            jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (response_id, sequence_number)
);
