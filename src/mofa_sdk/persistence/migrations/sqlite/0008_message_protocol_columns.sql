-- Two internal protocols move out of the user's message metadata into columns of their own, and a reply's
-- api-call row gets an index (issue 21):
--   delta_ends      where each delta of a streamed reply ends (was metadata "delta_ends", written for mofa serve)
--   request_params  the API request that started a turn, on its user message (was metadata "openai_response")
-- Existing values are moved; odd ones are dropped, never failing the migration.
ALTER TABLE entity_message ADD COLUMN delta_ends TEXT;
ALTER TABLE entity_message ADD COLUMN request_params TEXT;

UPDATE entity_message SET
    -- CASE, not AND: the elements are only read once the value is known to be an array
    delta_ends = CASE WHEN json_type(metadata, '$.delta_ends') = 'array' THEN
        CASE WHEN NOT EXISTS (
            SELECT 1 FROM json_each(entity_message.metadata, '$.delta_ends') e WHERE e.type <> 'integer' OR e.value < 0
        ) THEN json(metadata -> '$.delta_ends') END
    END,
    request_params = CASE WHEN json_type(metadata, '$.openai_response') = 'object'
                          THEN json(metadata -> '$.openai_response') END,
    metadata = json_remove(metadata, '$.delta_ends', '$.openai_response')
WHERE CASE WHEN json_valid(metadata) THEN json_type(metadata) = 'object'
    AND (json_type(metadata, '$.delta_ends') IS NOT NULL OR json_type(metadata, '$.openai_response') IS NOT NULL)
    ELSE 0 END;

-- a reply's api-call row (the service reads it for every finished response), newest first
CREATE INDEX IF NOT EXISTS entity_api_call_response_idx
    ON entity_api_call (tenant_id, response_message_id, create_time);
