-- Conversations: items kept in order, which a response names as its context and to which
-- its input and output are appended when it ends.
CREATE TABLE conversations (
    id            text PRIMARY KEY,
    -- Who created it: a digest of the API key, as for responses.
    owner         text NOT NULL,
    metadata      jsonb NOT NULL DEFAULT '{}',
    -- The position the next item takes. Handed out under the row lock, so the positions of
    -- appended items follow each other with no gap (deleting an item leaves one).
    next_position integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Each item is stored once. One added to the conversation directly holds its JSON (`item`);
-- one a response appended points at where that response holds it (`response_id`, `source`,
-- `source_index`: its stored input or its output, by index), and the JSON moves here only
-- when the response row is deleted (DELETE, retention). `response_id` is not a foreign key
-- for that reason: the move and the delete are one statement.
CREATE TABLE conversation_items (
    conversation_id text NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    position        integer NOT NULL,
    item_id         text NOT NULL,
    item            jsonb,
    response_id     text,
    source          text CHECK (source IN ('input', 'output')),
    source_index    integer,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, position),
    UNIQUE (conversation_id, item_id),
    CHECK ((item IS NOT NULL AND response_id IS NULL)
           OR (item IS NULL AND response_id IS NOT NULL AND source IS NOT NULL
               AND source_index IS NOT NULL))
);

CREATE INDEX conversation_items_response_idx ON conversation_items (response_id)
    WHERE response_id IS NOT NULL;

-- A response on a conversation: which one, and how many of its items came before it (its
-- context is the items below `conversation_position`, whatever is added after).
ALTER TABLE responses ADD COLUMN conversation_id text;
ALTER TABLE responses ADD COLUMN conversation_position integer;

-- The response still running on a conversation, if any: one at a time.
CREATE INDEX responses_conversation_active_idx ON responses (conversation_id)
    WHERE conversation_id IS NOT NULL AND status IN ('queued', 'in_progress');
