-- mofa-sdk schema, SQLite dialect (uuids and UTC times as TEXT, JSON as TEXT, booleans as INTEGER). Append-only: never edit a migration once it has landed.
CREATE TABLE IF NOT EXISTS entity_provider (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    provider_name   TEXT NOT NULL,
    provider_type   TEXT NOT NULL
        CONSTRAINT entity_provider_type_check
        CHECK (provider_type IN ('openai', 'compatible', 'azure', 'ollama', 'local')),
    api_base        TEXT,
    api_key         TEXT,
    enabled         INTEGER NOT NULL DEFAULT 1,
    create_time     TEXT NOT NULL,
    update_time     TEXT NOT NULL,
    CONSTRAINT entity_provider_tenant_name_key UNIQUE (tenant_id, provider_name)
);

CREATE TABLE IF NOT EXISTS entity_agent (
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
    provider_id           TEXT NOT NULL REFERENCES entity_provider (id) ON DELETE RESTRICT,
    response_format       TEXT,
    system_prompt         TEXT NOT NULL DEFAULT '',
    temperature           REAL
        CONSTRAINT entity_agent_temperature_check CHECK (temperature >= 0 AND temperature <= 2),
    stream                INTEGER NOT NULL DEFAULT 1,
    thinking              TEXT,
    create_time           TEXT NOT NULL,
    update_time           TEXT NOT NULL,
    CONSTRAINT entity_agent_tenant_code_key UNIQUE (tenant_id, agent_code)
);
CREATE INDEX IF NOT EXISTS entity_agent_provider_idx ON entity_agent (provider_id);

CREATE TABLE IF NOT EXISTS entity_session (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    agent_id    TEXT,
    title       TEXT,
    metadata    TEXT NOT NULL DEFAULT '{}',
    -- the last seq handed out; bumped in the same statement that inserts a message
    last_seq    INTEGER NOT NULL DEFAULT 0 CONSTRAINT entity_session_last_seq_check CHECK (last_seq >= 0),
    create_time TEXT NOT NULL,
    update_time TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entity_session_user_recent_idx
    ON entity_session (tenant_id, user_id, update_time DESC);

CREATE TABLE IF NOT EXISTS entity_message (
    id                TEXT PRIMARY KEY,
    session_id        TEXT NOT NULL REFERENCES entity_session (id) ON DELETE CASCADE,
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
    CONSTRAINT entity_message_session_seq_key UNIQUE (session_id, seq)
);

CREATE TABLE IF NOT EXISTS entity_api_call (
    id                        TEXT PRIMARY KEY,
    tenant_id                 TEXT NOT NULL,
    session_id                TEXT NOT NULL REFERENCES entity_session (id) ON DELETE CASCADE,
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
    create_time               TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entity_api_call_time_idx ON entity_api_call (tenant_id, create_time);
CREATE INDEX IF NOT EXISTS entity_api_call_session_idx ON entity_api_call (tenant_id, session_id, create_time);
CREATE INDEX IF NOT EXISTS entity_api_call_agent_idx ON entity_api_call (tenant_id, agent_id, create_time);
CREATE INDEX IF NOT EXISTS entity_api_call_user_idx ON entity_api_call (tenant_id, user_id, create_time);
CREATE INDEX IF NOT EXISTS entity_api_call_status_idx ON entity_api_call (tenant_id, status, create_time);
CREATE INDEX IF NOT EXISTS entity_api_call_model_idx ON entity_api_call (tenant_id, model_name, create_time);
