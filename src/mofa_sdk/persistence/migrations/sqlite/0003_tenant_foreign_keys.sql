-- A message or api call may only point at a session of its own tenant, an agent only at a provider of its own
-- tenant: the foreign keys become (tenant_id, session_id) and (tenant_id, provider_id). SQLite cannot alter a
-- foreign key, so the three child tables are rebuilt (none of them is a parent, so dropping the old table
-- cascades nothing); the parents only gain a unique index on (tenant_id, id).
--
-- Rows that already break this (written around the store, e.g. by hand) stop the migration with nothing changed.
CREATE TEMP TABLE mofa_0003_check (mismatched INTEGER NOT NULL);
CREATE TEMP TRIGGER mofa_0003_refuse BEFORE INSERT ON mofa_0003_check WHEN NEW.mismatched > 0
BEGIN
    SELECT RAISE(ABORT, 'migration 0003_tenant_foreign_keys: some messages or api calls belong to another tenant than their session, or agents to another tenant than their provider; nothing was changed. Delete or correct those rows (docs/reliability.md, "Round 2: tenancy", has the queries), then migrate again');
END;
INSERT INTO mofa_0003_check (mismatched) SELECT
    (SELECT count(*) FROM entity_message m WHERE NOT EXISTS
        (SELECT 1 FROM entity_session s WHERE s.id = m.session_id AND s.tenant_id = m.tenant_id))
  + (SELECT count(*) FROM entity_api_call c WHERE NOT EXISTS
        (SELECT 1 FROM entity_session s WHERE s.id = c.session_id AND s.tenant_id = c.tenant_id))
  + (SELECT count(*) FROM entity_agent a WHERE NOT EXISTS
        (SELECT 1 FROM entity_provider p WHERE p.id = a.provider_id AND p.tenant_id = a.tenant_id));
DROP TABLE mofa_0003_check;

CREATE UNIQUE INDEX entity_session_tenant_id_key ON entity_session (tenant_id, id);
CREATE UNIQUE INDEX entity_provider_tenant_id_key ON entity_provider (tenant_id, id);

CREATE TABLE entity_message_0003 (
    id                TEXT PRIMARY KEY,
    session_id        TEXT NOT NULL,
    tenant_id         TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    agent_id          TEXT,
    seq               INTEGER NOT NULL CONSTRAINT entity_message_seq_check CHECK (seq > 0),
    role              TEXT NOT NULL
        CONSTRAINT entity_message_role_check CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    content           TEXT NOT NULL,
    status            TEXT NOT NULL DEFAULT 'complete'
        CONSTRAINT entity_message_status_check
        CHECK (status IN ('complete', 'streaming', 'cancelled', 'error', 'interrupted')),
    metadata          TEXT NOT NULL DEFAULT '{}',
    -- kept so both dialects store the same rows; SQLite accepts U+0000, so it stays false here
    nul_escaped       INTEGER NOT NULL DEFAULT 0,
    parent_message_id TEXT,
    create_time       TEXT NOT NULL,
    update_time       TEXT NOT NULL,
    -- "the last K messages of a session" is a backward range scan of this index
    CONSTRAINT entity_message_session_seq_key UNIQUE (session_id, seq),
    CONSTRAINT entity_message_session_fkey FOREIGN KEY (tenant_id, session_id)
        REFERENCES entity_session (tenant_id, id) ON DELETE CASCADE
);
INSERT INTO entity_message_0003 (id, session_id, tenant_id, user_id, agent_id, seq, role, content, status, metadata,
                                 nul_escaped, parent_message_id, create_time, update_time)
    SELECT id, session_id, tenant_id, user_id, agent_id, seq, role, content, status, metadata,
           nul_escaped, parent_message_id, create_time, update_time
    FROM entity_message;
DROP TABLE entity_message;
ALTER TABLE entity_message_0003 RENAME TO entity_message;
CREATE INDEX entity_message_streaming_idx ON entity_message (session_id) WHERE status = 'streaming';

CREATE TABLE entity_api_call_0003 (
    id                        TEXT PRIMARY KEY,
    tenant_id                 TEXT NOT NULL,
    session_id                TEXT NOT NULL,
    user_id                   TEXT NOT NULL,
    agent_id                  TEXT,
    request_message_id        TEXT,
    response_message_id       TEXT,
    model_name                TEXT NOT NULL,
    status                    TEXT NOT NULL
        CONSTRAINT entity_api_call_status_check
        CHECK (status IN ('success', 'failed', 'timeout', 'rate_limited', 'cancelled')),
    error_message             TEXT,
    error_code                TEXT,
    prompt_tokens             INTEGER NOT NULL DEFAULT 0
        CONSTRAINT entity_api_call_prompt_tokens_check CHECK (prompt_tokens >= 0),
    completion_tokens         INTEGER NOT NULL DEFAULT 0
        CONSTRAINT entity_api_call_completion_tokens_check CHECK (completion_tokens >= 0),
    total_tokens              INTEGER NOT NULL DEFAULT 0
        CONSTRAINT entity_api_call_total_tokens_check CHECK (total_tokens >= 0),
    prompt_tokens_details     TEXT,
    completion_tokens_details TEXT,
    tokens_estimated          INTEGER NOT NULL DEFAULT 0,
    price                     REAL CONSTRAINT entity_api_call_price_check CHECK (price >= 0),
    price_details             TEXT,
    latency_ms                INTEGER CONSTRAINT entity_api_call_latency_check CHECK (latency_ms >= 0),
    time_to_first_token_ms    INTEGER CONSTRAINT entity_api_call_ttft_check CHECK (time_to_first_token_ms >= 0),
    tokens_per_second         REAL CONSTRAINT entity_api_call_tps_check CHECK (tokens_per_second >= 0),
    provider_response_id      TEXT,
    create_time               TEXT NOT NULL,
    CONSTRAINT entity_api_call_session_fkey FOREIGN KEY (tenant_id, session_id)
        REFERENCES entity_session (tenant_id, id) ON DELETE CASCADE
);
INSERT INTO entity_api_call_0003 (id, tenant_id, session_id, user_id, agent_id, request_message_id,
                                  response_message_id, model_name, status, error_message, error_code, prompt_tokens,
                                  completion_tokens, total_tokens, prompt_tokens_details, completion_tokens_details,
                                  tokens_estimated, price, price_details, latency_ms, time_to_first_token_ms,
                                  tokens_per_second, provider_response_id, create_time)
    SELECT id, tenant_id, session_id, user_id, agent_id, request_message_id, response_message_id, model_name, status,
           error_message, error_code, prompt_tokens, completion_tokens, total_tokens, prompt_tokens_details,
           completion_tokens_details, tokens_estimated, price, price_details, latency_ms, time_to_first_token_ms,
           tokens_per_second, provider_response_id, create_time
    FROM entity_api_call;
DROP TABLE entity_api_call;
ALTER TABLE entity_api_call_0003 RENAME TO entity_api_call;
CREATE INDEX entity_api_call_time_idx ON entity_api_call (tenant_id, create_time);
CREATE INDEX entity_api_call_session_idx ON entity_api_call (tenant_id, session_id, create_time);
CREATE INDEX entity_api_call_agent_idx ON entity_api_call (tenant_id, agent_id, create_time);
CREATE INDEX entity_api_call_user_idx ON entity_api_call (tenant_id, user_id, create_time);
CREATE INDEX entity_api_call_status_idx ON entity_api_call (tenant_id, status, create_time);
CREATE INDEX entity_api_call_model_idx ON entity_api_call (tenant_id, model_name, create_time);

CREATE TABLE entity_agent_0003 (
    id                    TEXT PRIMARY KEY,
    tenant_id             TEXT NOT NULL,
    agent_code            TEXT NOT NULL,
    agent_name            TEXT NOT NULL,
    agent_order           INTEGER NOT NULL DEFAULT 0,
    agent_status          INTEGER NOT NULL DEFAULT 1,
    context_limit         INTEGER CONSTRAINT entity_agent_context_limit_check CHECK (context_limit >= 0),
    custom_params         TEXT,
    max_completion_tokens INTEGER
        CONSTRAINT entity_agent_max_completion_tokens_check CHECK (max_completion_tokens > 0),
    model_name            TEXT NOT NULL,
    provider_id           TEXT NOT NULL,
    response_format       TEXT,
    system_prompt         TEXT NOT NULL DEFAULT '',
    temperature           REAL
        CONSTRAINT entity_agent_temperature_check CHECK (temperature >= 0 AND temperature <= 2),
    stream                INTEGER NOT NULL DEFAULT 1,
    thinking              TEXT,
    create_time           TEXT NOT NULL,
    update_time           TEXT NOT NULL,
    CONSTRAINT entity_agent_tenant_code_key UNIQUE (tenant_id, agent_code),
    CONSTRAINT entity_agent_provider_fkey FOREIGN KEY (tenant_id, provider_id)
        REFERENCES entity_provider (tenant_id, id) ON DELETE RESTRICT
);
INSERT INTO entity_agent_0003 (id, tenant_id, agent_code, agent_name, agent_order, agent_status, context_limit,
                               custom_params, max_completion_tokens, model_name, provider_id, response_format,
                               system_prompt, temperature, stream, thinking, create_time, update_time)
    SELECT id, tenant_id, agent_code, agent_name, agent_order, agent_status, context_limit, custom_params,
           max_completion_tokens, model_name, provider_id, response_format, system_prompt, temperature, stream,
           thinking, create_time, update_time
    FROM entity_agent;
DROP TABLE entity_agent;
ALTER TABLE entity_agent_0003 RENAME TO entity_agent;
CREATE INDEX entity_agent_provider_idx ON entity_agent (provider_id);
