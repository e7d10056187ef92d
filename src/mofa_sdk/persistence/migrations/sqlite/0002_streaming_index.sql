-- Replies still streaming are few; resuming a session looks for them (to mark the stale ones interrupted).
-- Without this partial index that lookup read every row of the session.
CREATE INDEX IF NOT EXISTS entity_message_streaming_idx ON entity_message (session_id) WHERE status = 'streaming';
