-- Tracing (issue 25): the OpenTelemetry trace an LLM call ran in (32 lowercase hex digits), so that a row
-- read in `mofa usage` or a dashboard leads to its spans in the tracing backend. NULL when no tracing SDK
-- was configured. Rows stored before this have none.
ALTER TABLE entity_api_call ADD COLUMN trace_id TEXT;
