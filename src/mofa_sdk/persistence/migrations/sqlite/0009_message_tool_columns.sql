-- Messages with tools (issue 22): beside its text a message may carry
--   tool_calls    an assistant message's calls, [{"id", "name", "arguments"}] (arguments: the model's JSON text)
--   tool_call_id  the call a tool message answers
--   is_error      a tool message's result is an error (the tool raised, or was interrupted)
--   parts         a user message's input parts, [{"type": "text", "text"} | {"type": "image", "url", "detail"?}]
-- Rows stored before this read as text: no calls, no parts.
ALTER TABLE entity_message ADD COLUMN tool_calls TEXT NOT NULL DEFAULT '[]';
ALTER TABLE entity_message ADD COLUMN tool_call_id TEXT;
ALTER TABLE entity_message ADD COLUMN is_error INTEGER NOT NULL DEFAULT 0;
ALTER TABLE entity_message ADD COLUMN parts TEXT NOT NULL DEFAULT '[]';
