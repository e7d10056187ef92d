-- 0011: indexes that keep the read paths flat as the database grows (issue 28; docs/benchmarks.md, "Growth").
-- Listing orders by (update_time DESC, id DESC): the index now has both, so a page is a range scan.
CREATE INDEX IF NOT EXISTS entity_session_user_recent_id_idx
    ON entity_session (tenant_id, user_id, update_time DESC, id DESC);
DROP INDEX IF EXISTS entity_session_user_recent_idx;
-- An id prefix is a range of ids within the user's sessions (a suffix reads the user's sessions: SQLite has
-- no reverse() to index).
CREATE INDEX IF NOT EXISTS entity_session_user_id_idx ON entity_session (tenant_id, user_id, id);
-- Search can walk the user's messages newest first when the word is common.
CREATE INDEX IF NOT EXISTS entity_message_user_recent_idx
    ON entity_message (tenant_id, user_id, create_time DESC, id DESC);
-- Statistics read only these columns: covering indexes (SQLite has no INCLUDE: they are key columns).
CREATE INDEX IF NOT EXISTS entity_api_call_usage_idx ON entity_api_call (tenant_id, create_time, user_id,
    agent_id, model_name, status, prompt_tokens, completion_tokens, total_tokens, price, latency_ms,
    time_to_first_token_ms, tokens_per_second);
CREATE INDEX IF NOT EXISTS entity_api_call_user_usage_idx ON entity_api_call (tenant_id, user_id, create_time,
    agent_id, model_name, status, prompt_tokens, completion_tokens, total_tokens, price, latency_ms,
    time_to_first_token_ms, tokens_per_second);
DROP INDEX IF EXISTS entity_api_call_time_idx;
DROP INDEX IF EXISTS entity_api_call_user_idx;
-- Retention deletes by age across tenants, in bounded batches.
CREATE INDEX IF NOT EXISTS entity_api_call_age_idx ON entity_api_call (create_time);
