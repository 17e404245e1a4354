-- How often the recovery sweep found the response with nothing running it and queued it
-- again; past MAX_ATTEMPTS it is failed instead.
ALTER TABLE responses ADD COLUMN recoveries integer NOT NULL DEFAULT 0;
