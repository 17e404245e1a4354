-- The key that seals reasoning (`encrypted_content`) when REASONING_ENCRYPTION_KEYS is unset:
-- generated once, by the first process that needs it, and read by every replica after.
CREATE TABLE reasoning_sealing_key (
    id         smallint PRIMARY KEY CHECK (id = 1),
    key        text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
