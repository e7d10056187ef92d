-- 0011: indexes that keep the read paths flat as the database grows (issue 28; docs/benchmarks.md, "Growth").
-- Every index is created IF NOT EXISTS: on a large live database, build them first by hand with
-- CREATE INDEX CONCURRENTLY (docs/architecture.md, "Migrating a large database"), then migrate: this migration
-- then only drops the indexes the new ones replace.
--
-- Listing orders by (update_time DESC, id DESC); the old index lacked id, so every page re-sorted the user's
-- sessions. With both columns a first page, and a keyset page after any session, is a short range scan.
CREATE INDEX IF NOT EXISTS entity_session_user_recent_id_idx
    ON entity_session (tenant_id, user_id, update_time DESC, id DESC);
DROP INDEX IF EXISTS entity_session_user_recent_idx;
-- An id prefix is a range of ids within the user's sessions; a suffix (the short id lists show) a range of the
-- reversed text. COLLATE "C": the range is compared byte by byte, as hex digits and dashes order.
CREATE INDEX IF NOT EXISTS entity_session_user_id_idx ON entity_session (tenant_id, user_id, id);
CREATE INDEX IF NOT EXISTS entity_session_user_id_suffix_idx
    ON entity_session (tenant_id, user_id, (reverse(id::text) COLLATE "C"));
-- Search walks the user's messages newest first when the word is common (stopping at the page's limit), and
-- the full-text index when it is rare; the statement is planned for its own words every time (_sql.py).
CREATE INDEX IF NOT EXISTS entity_message_user_recent_idx
    ON entity_message (tenant_id, user_id, create_time DESC, id DESC);
-- Statistics read only these columns: covering indexes answer them from the index (no table visits), for a
-- tenant and for one user. They replace the plain (…, create_time) indexes of 0001.
CREATE INDEX IF NOT EXISTS entity_api_call_usage_idx ON entity_api_call (tenant_id, create_time)
    INCLUDE (user_id, agent_id, model_name, status, prompt_tokens, completion_tokens, total_tokens, price,
             latency_ms, time_to_first_token_ms, tokens_per_second);
CREATE INDEX IF NOT EXISTS entity_api_call_user_usage_idx ON entity_api_call (tenant_id, user_id, create_time)
    INCLUDE (agent_id, model_name, status, prompt_tokens, completion_tokens, total_tokens, price,
             latency_ms, time_to_first_token_ms, tokens_per_second);
DROP INDEX IF EXISTS entity_api_call_time_idx;
DROP INDEX IF EXISTS entity_api_call_user_idx;
-- Retention deletes by age across tenants, in bounded batches: the oldest rows first, found by this index.
CREATE INDEX IF NOT EXISTS entity_api_call_age_idx ON entity_api_call (create_time);
