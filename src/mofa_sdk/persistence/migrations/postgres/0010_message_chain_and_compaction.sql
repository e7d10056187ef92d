-- History threading (issue 23): each message's link of the history chain (see persistence/_chain.py), the
-- sha256 of the link before it and of its role, text, tool calls and parts. NULL until the store computes it:
-- rows written before this migration and every new row get theirs when a request of their user is threaded
-- (the store seals the user's open rows first), so the write path stays as it was.
ALTER TABLE entity_message ADD COLUMN chain_hash text;

-- "the session of this user whose last message has this link", and "this user's rows still to seal"
CREATE INDEX IF NOT EXISTS entity_message_chain_idx ON entity_message (tenant_id, user_id, chain_hash);
CREATE INDEX IF NOT EXISTS entity_message_unchained_idx ON entity_message (tenant_id, user_id, session_id, seq)
    WHERE chain_hash IS NULL;

-- A compaction (POST /v1/responses/compact): a system message summarising every message of its session
-- before it; the window starts at the last one. A constant default adds the column without a rewrite.
ALTER TABLE entity_message ADD COLUMN compaction boolean NOT NULL DEFAULT false;
