-- An `item_reference` names an item of an earlier response by id: the ids of each response's
-- input and output items, indexed, find it without reading every row of the owner. Only ids
-- of the form Ferry's references may take are indexed (`app.ids.is_well_formed`): a client's
-- overlong id must not make its row too big for the index.
CREATE FUNCTION response_item_ids(request jsonb, output jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(item ->> 'id')
                        FILTER (WHERE item ->> 'id' ~ '^[A-Za-z0-9_-]{1,128}$'), '{}')
      FROM (SELECT jsonb_array_elements(CASE WHEN jsonb_typeof(request -> 'input') = 'array'
                                             THEN request -> 'input' ELSE '[]' END)
            UNION ALL
            SELECT jsonb_array_elements(CASE WHEN jsonb_typeof(output) = 'array'
                                             THEN output ELSE '[]' END)) AS items (item)
$$;

CREATE INDEX responses_item_ids_idx ON responses USING gin (response_item_ids(request, output));
