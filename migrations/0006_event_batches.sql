-- The event log in batches: one row per flush instead of one per event (one per token), so
-- a streamed token costs a few bytes of storage and no index entry of its own.
--
-- `events` holds the batch's events, in order, encoded as `codec` says (app/store/event_codec.py):
-- 0 is a plain JSON array (what this migration writes for the rows it moves), 1 is that array
-- compressed with zlib and a preset dictionary. `closed` marks the batch that ends with the
-- terminal event, after which nothing may be appended.
CREATE TABLE response_event_batches (
    response_id text NOT NULL REFERENCES responses (id) ON DELETE CASCADE,
    first_sequence_number integer NOT NULL,
    last_sequence_number integer NOT NULL,
    closed boolean NOT NULL,
    codec smallint NOT NULL,
    events bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (response_id, first_sequence_number),
    CHECK (last_sequence_number >= first_sequence_number)
);

INSERT INTO response_event_batches
    (response_id, first_sequence_number, last_sequence_number, closed, codec, events, created_at)
SELECT response_id,
       min(sequence_number),
       max(sequence_number),
       bool_or(type IN ('response.cancelled', 'response.completed', 'response.failed',
                        'response.incomplete')),
       0,
       convert_to(jsonb_agg(data ORDER BY sequence_number)::text, 'UTF8'),
       max(created_at)
  FROM response_events
 GROUP BY response_id;

DROP TABLE response_events;
