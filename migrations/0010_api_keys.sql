-- API keys kept in the database (`ferry keys create | list | revoke`), beside API_KEYS.
-- Only a digest of each key is stored. The prefix is the key's first characters: enough to
-- tell keys apart in a listing, of no use for guessing the rest.
CREATE TABLE api_keys (
    id                       text PRIMARY KEY,
    -- The name the operator gave; keys of one name share one owner (a rotation keeps it).
    name                     text NOT NULL,
    -- Whom the responses made with the key belong to: derived from the name, never the key.
    owner                    text NOT NULL,
    prefix                   text NOT NULL UNIQUE,
    digest                   text NOT NULL UNIQUE,
    created_at               timestamptz NOT NULL DEFAULT now(),
    expires_at               timestamptz,
    revoked_at               timestamptz,
    -- Written lazily (at most once a minute per key and API process), off the request path.
    last_used_at             timestamptz,
    -- Limits of the key's owner; NULL: none.
    max_concurrent_responses integer CHECK (max_concurrent_responses > 0),
    max_requests_per_minute  integer CHECK (max_requests_per_minute > 0)
);
CREATE INDEX api_keys_name_idx ON api_keys (name);

-- Any change that matters to authentication, made by `ferry keys` or by hand, tells every
-- API process to forget the keys it knows; a new last_used_at does not.
CREATE FUNCTION ferry_api_keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ferry_api_keys', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER api_keys_changed
    AFTER INSERT OR DELETE OR UPDATE OF name, owner, digest, expires_at, revoked_at,
        max_concurrent_responses, max_requests_per_minute
    ON api_keys FOR EACH STATEMENT EXECUTE FUNCTION ferry_api_keys_changed();
CREATE TRIGGER api_keys_truncated
    AFTER TRUNCATE ON api_keys FOR EACH STATEMENT EXECUTE FUNCTION ferry_api_keys_changed();

-- Requests per minute of each owner whose key has a limit: one fixed window a row.
CREATE TABLE api_key_windows (
    owner    text PRIMARY KEY,
    minute   timestamptz NOT NULL,
    requests integer NOT NULL
);

-- The responses of an owner that are queued or running: what the concurrency limit counts.
CREATE INDEX responses_running_owner_idx ON responses (owner)
    WHERE status IN ('queued', 'in_progress');
