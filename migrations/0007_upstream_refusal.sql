-- What the upstream refused a response's first model turn with (its HTTP status, message,
-- code, param and Retry-After), when it refused it with a 4xx: a blocking create answers
-- with it as an HTTP error instead of a `failed` response.
ALTER TABLE responses ADD COLUMN upstream_refusal jsonb;
