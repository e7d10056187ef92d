-- JSON columns keep the text as written (json) instead of a normalised form (jsonb). jsonb turned 1e20 into
-- an integer, -0.0 into 0.0 and 1.5e300 into a different integer, and reordered keys, so JSON did not read
-- back as it was saved (SQLite keeps the text). Values saved before this migration keep jsonb's form.
-- Each ALTER rewrites its table under an ACCESS EXCLUSIVE lock: on a large database, run it off-peak.
ALTER TABLE entity_message
    ALTER COLUMN metadata DROP DEFAULT,
    ALTER COLUMN metadata TYPE json USING metadata::json,
    ALTER COLUMN metadata SET DEFAULT '{}'::json;
ALTER TABLE entity_session
    ALTER COLUMN metadata DROP DEFAULT,
    ALTER COLUMN metadata TYPE json USING metadata::json,
    ALTER COLUMN metadata SET DEFAULT '{}'::json;
ALTER TABLE entity_agent
    ALTER COLUMN custom_params TYPE json USING custom_params::json,
    ALTER COLUMN response_format TYPE json USING response_format::json,
    ALTER COLUMN thinking TYPE json USING thinking::json;
ALTER TABLE entity_api_call
    ALTER COLUMN prompt_tokens_details TYPE json USING prompt_tokens_details::json,
    ALTER COLUMN completion_tokens_details TYPE json USING completion_tokens_details::json,
    ALTER COLUMN price_details TYPE json USING price_details::json;
