-- 0005: full-text search over message content (`Store.search_messages`, `mofa sessions search`).
-- The 'simple' configuration: words as written (lower-cased), no stemming, so every language is searched
-- alike and the stores agree. Queries add the tenant and user conditions.
CREATE INDEX IF NOT EXISTS entity_message_content_fts_idx
    ON entity_message USING gin (to_tsvector('simple'::regconfig, content));
