-- Background and flex responses run as procrastinate jobs; the row remembers its job so a
-- cancel can abort it.
ALTER TABLE responses ADD COLUMN job_id bigint;
