-- Every query on conversations and their items, loaded by name (`-- name: x`).
--
-- An item row either holds its JSON (`item`) or points into the response that holds it
-- (migration 0010); every read resolves it the same way, with `resolved_item` below written
-- out in each query that reads items:
--   coalesce(ci.item, CASE ci.source WHEN 'input' THEN r.request -> 'input' -> ci.source_index
--                                    ELSE r.output -> ci.source_index END)

-- name: insert_conversation
INSERT INTO conversations (id, owner, metadata) VALUES (%(id)s, %(owner)s, %(metadata)s)
RETURNING *;

-- name: get_conversation
SELECT * FROM conversations WHERE id = %(id)s AND owner = %(owner)s;

-- name: lock_conversation
-- Whatever changes the list of items (a response accepted on the conversation, items added
-- or deleted, a response's items appended) takes this lock first: they take turns, and each
-- one's next statement sees what the last one committed.
SELECT * FROM conversations WHERE id = %(id)s AND owner = %(owner)s FOR UPDATE;

-- name: lock_conversation_any_owner
-- For appending a response's items: the response's owner is the conversation's.
SELECT * FROM conversations WHERE id = %(id)s FOR UPDATE;

-- name: update_metadata
UPDATE conversations SET metadata = %(metadata)s, updated_at = now()
 WHERE id = %(id)s AND owner = %(owner)s
RETURNING *;

-- name: delete_conversation
-- Its items go with it (ON DELETE CASCADE); the responses that ran on it stay.
DELETE FROM conversations WHERE id = %(id)s AND owner = %(owner)s RETURNING id;

-- name: running_response
-- The response queued or running on the conversation, if any (`responses_conversation_active_idx`).
SELECT id, status FROM responses
 WHERE conversation_id = %(id)s AND status IN {{active}}
 LIMIT 1;

-- name: taken_item_ids
SELECT item_id FROM conversation_items
 WHERE conversation_id = %(id)s AND item_id = ANY(%(item_ids)s);

-- name: add_items
-- Items added directly, in order from %(first)s, the conversation's next position (the
-- caller holds its lock); the conversation's next position moves past them.
WITH added AS (
    INSERT INTO conversation_items (conversation_id, position, item_id, item)
    SELECT %(id)s, %(first)s + e.ord - 1, e.item ->> 'id', e.item
      FROM jsonb_array_elements(%(items)s) WITH ORDINALITY AS e (item, ord)
    RETURNING position
)
UPDATE conversations
   SET next_position = %(first)s + (SELECT count(*) FROM added), updated_at = now()
 WHERE id = %(id)s;

-- name: append_response_items
-- The input, then the output, of a response that has just ended, after the conversation's
-- items, from %(first)s (the caller holds the conversation's lock, in the transaction that
-- ended the response). Each is referenced where the response holds it; with %(held)s (a
-- response whose content is forgotten as it ends) its JSON is kept here instead. An id the
-- conversation already holds is not added again: the create refused such input, so this only
-- keeps the transaction from failing, and the positions of what is added stay dense. Ids of
-- a form no client of ours could send back are left out for the same reason (0008).
WITH ended AS (
    SELECT request -> 'input' AS input, output FROM responses WHERE id = %(response_id)s
), candidates AS (
    SELECT 'input' AS source, e.ord, e.item
      FROM ended, jsonb_array_elements(CASE WHEN jsonb_typeof(ended.input) = 'array'
                                            THEN ended.input ELSE '[]' END)
                  WITH ORDINALITY AS e (item, ord)
    UNION ALL
    SELECT 'output', e.ord, e.item
      FROM ended, jsonb_array_elements(CASE WHEN jsonb_typeof(ended.output) = 'array'
                                            THEN ended.output ELSE '[]' END)
                  WITH ORDINALITY AS e (item, ord)
), fresh AS (
    SELECT DISTINCT ON (c.item ->> 'id') c.source, c.ord, c.item
      FROM candidates c
     WHERE c.item ->> 'id' ~ '^[A-Za-z0-9_-]{1,128}$'
       AND NOT EXISTS (SELECT 1 FROM conversation_items ci
                        WHERE ci.conversation_id = %(conversation_id)s
                          AND ci.item_id = c.item ->> 'id')
     ORDER BY c.item ->> 'id', c.source = 'output', c.ord
), numbered AS (
    SELECT f.*, row_number() OVER (ORDER BY f.source = 'output', f.ord) - 1 AS step
      FROM fresh f
), appended AS (
    INSERT INTO conversation_items
        (conversation_id, position, item_id, item, response_id, source, source_index)
    SELECT %(conversation_id)s, %(first)s + n.step, n.item ->> 'id',
           CASE WHEN %(held)s THEN n.item END,
           CASE WHEN NOT %(held)s THEN %(response_id)s::text END,
           CASE WHEN NOT %(held)s THEN n.source END,
           CASE WHEN NOT %(held)s THEN n.ord - 1 END
      FROM numbered n
    ON CONFLICT DO NOTHING
    RETURNING position
)
UPDATE conversations
   SET next_position = %(first)s + (SELECT count(*) FROM appended), updated_at = now()
 WHERE id = %(conversation_id)s;

-- name: list_items_asc
-- A page of items after position %(after)s, oldest first; one more than asked tells there is more.
SELECT ci.position, ci.item_id,
       coalesce(ci.item, CASE ci.source WHEN 'input' THEN r.request -> 'input' -> ci.source_index
                                        ELSE r.output -> ci.source_index END) AS item
  FROM conversation_items ci LEFT JOIN responses r ON r.id = ci.response_id
 WHERE ci.conversation_id = %(id)s AND ci.position > %(after)s
 ORDER BY ci.position
 LIMIT %(limit)s;

-- name: list_items_desc
-- A page of items before position %(before)s, newest first.
SELECT ci.position, ci.item_id,
       coalesce(ci.item, CASE ci.source WHEN 'input' THEN r.request -> 'input' -> ci.source_index
                                        ELSE r.output -> ci.source_index END) AS item
  FROM conversation_items ci LEFT JOIN responses r ON r.id = ci.response_id
 WHERE ci.conversation_id = %(id)s AND ci.position < %(before)s
 ORDER BY ci.position DESC
 LIMIT %(limit)s;

-- name: context_items
-- Every item below position %(before)s, in order: a response's context.
SELECT coalesce(ci.item, CASE ci.source WHEN 'input' THEN r.request -> 'input' -> ci.source_index
                                        ELSE r.output -> ci.source_index END) AS item
  FROM conversation_items ci LEFT JOIN responses r ON r.id = ci.response_id
 WHERE ci.conversation_id = %(id)s AND ci.position < %(before)s
 ORDER BY ci.position;

-- name: get_item
SELECT ci.position, ci.item_id,
       coalesce(ci.item, CASE ci.source WHEN 'input' THEN r.request -> 'input' -> ci.source_index
                                        ELSE r.output -> ci.source_index END) AS item
  FROM conversation_items ci LEFT JOIN responses r ON r.id = ci.response_id
 WHERE ci.conversation_id = %(id)s AND ci.item_id = %(item_id)s;

-- name: delete_item
DELETE FROM conversation_items
 WHERE conversation_id = %(id)s AND item_id = %(item_id)s
RETURNING position;
