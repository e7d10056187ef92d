-- Two internal protocols move out of the user's message metadata into columns of their own, and a reply's
-- api-call row gets an index (issue 21):
--   delta_ends      where each delta of a streamed reply ends (was metadata "delta_ends", written for mofa serve)
--   request_params  the API request that started a turn, on its user message (was metadata "openai_response")
-- Existing values are moved; odd ones are dropped, never failing the migration. A row stored NUL-escaped
-- (nul_escaped) keeps "openai_response" in its metadata: its strings are in the escaped form there.
ALTER TABLE entity_message
    ADD COLUMN delta_ends json,
    ADD COLUMN request_params json;

UPDATE entity_message m SET
    -- CASE, not AND: the elements are only read once the value is known to be an array
    delta_ends = CASE WHEN json_typeof(m.metadata -> 'delta_ends') = 'array' THEN
        CASE WHEN NOT EXISTS (
            SELECT 1 FROM json_array_elements(m.metadata -> 'delta_ends') AS e (v)
            WHERE json_typeof(e.v) <> 'number' OR e.v::text !~ '^[0-9]{1,18}$'
        ) THEN m.metadata -> 'delta_ends' END
    END,
    request_params = CASE WHEN NOT m.nul_escaped AND json_typeof(m.metadata -> 'openai_response') = 'object'
                          THEN m.metadata -> 'openai_response' END,
    metadata = COALESCE((
        SELECT json_object_agg(e.key, e.value) FROM json_each(m.metadata) e
        WHERE e.key <> 'delta_ends' AND (e.key <> 'openai_response' OR m.nul_escaped)
    ), '{}'::json)
WHERE json_typeof(m.metadata) = 'object'
    AND (m.metadata -> 'delta_ends' IS NOT NULL OR (m.metadata -> 'openai_response' IS NOT NULL AND NOT m.nul_escaped));

-- a reply's api-call row (the service reads it for every finished response), newest first
CREATE INDEX IF NOT EXISTS entity_api_call_response_idx
    ON entity_api_call (tenant_id, response_message_id, create_time);
