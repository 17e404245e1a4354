-- The operator console (/console).

-- A key made with `ferry keys create --admin` also opens the console, beside ADMIN_API_KEYS.
ALTER TABLE api_keys ADD COLUMN admin boolean NOT NULL DEFAULT false;

-- A key losing (or gaining) the flag matters to authentication like any other change: the
-- trigger of 0010 is made again with `admin` among the columns it watches.
DROP TRIGGER api_keys_changed ON api_keys;
CREATE TRIGGER api_keys_changed
    AFTER INSERT OR DELETE OR UPDATE OF name, owner, digest, expires_at, revoked_at,
        max_concurrent_responses, max_requests_per_minute, admin
    ON api_keys FOR EACH STATEMENT EXECUTE FUNCTION ferry_api_keys_changed();

-- The secret that signs console sessions when CONSOLE_SECRET is unset: generated once, by the
-- first API process that needs it, and read by every replica after, so a session made on one
-- replica holds on all of them.
CREATE TABLE console_secret (
    id         smallint PRIMARY KEY CHECK (id = 1),
    secret     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The console lists every owner's responses, newest first, a page at a time by keyset
-- (created_at, id); the owner index of 0001 serves only one owner's.
CREATE INDEX responses_created_idx ON responses (created_at DESC, id DESC);
