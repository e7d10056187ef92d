-- mofa-sdk: initialise a PostgreSQL database (13 or newer) with the schema the library's migrations produce.
--
--     psql -d DB -f scripts/sql/migrations/postgres_init.sql
--
-- Safe to run twice. Needs no extension. The tables land in the first schema of the search_path
-- (e.g. PGOPTIONS=-csearch_path=myschema). The migration names are recorded in mofa_migrations, so
-- `mofa db migrate` / PostgresStore.connect() see a current schema and apply nothing.
-- tests/test_migrations.py keeps this file equal to src/mofa_sdk/persistence/migrations/postgres/.
\set ON_ERROR_STOP on
SET client_min_messages = warning;  -- quiet "already exists, skipping" on a second run

BEGIN;

CREATE TABLE IF NOT EXISTS mofa_migrations (
    name       text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- ---- migration 0001_init --------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS entity_provider (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL,
    provider_name   text NOT NULL,
    provider_type   text NOT NULL
        CONSTRAINT entity_provider_type_check
        CHECK (provider_type IN ('openai', 'compatible', 'azure', 'ollama', 'local')),
    api_base        text,
    api_key         text,
    enabled         boolean NOT NULL DEFAULT true,
    create_time     timestamptz NOT NULL DEFAULT now(),
    update_time     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT entity_provider_tenant_name_key UNIQUE (tenant_id, provider_name)
);

CREATE TABLE IF NOT EXISTS entity_agent (
    id                    uuid PRIMARY KEY,
    tenant_id             uuid NOT NULL,
    agent_code            text NOT NULL,
    agent_name            text NOT NULL,
    agent_order           integer NOT NULL DEFAULT 0,
    agent_status          boolean NOT NULL DEFAULT true,
    context_limit         integer CONSTRAINT entity_agent_context_limit_check CHECK (context_limit >= 0),
    custom_params         jsonb,
    max_completion_tokens integer
        CONSTRAINT entity_agent_max_completion_tokens_check CHECK (max_completion_tokens > 0),
    model_name            text NOT NULL,
    provider_id           uuid NOT NULL REFERENCES entity_provider (id) ON DELETE RESTRICT,
    response_format       jsonb,
    system_prompt         text NOT NULL DEFAULT '',
    temperature           double precision
        CONSTRAINT entity_agent_temperature_check CHECK (temperature >= 0 AND temperature <= 2),
    stream                boolean NOT NULL DEFAULT true,
    thinking              jsonb,
    create_time           timestamptz NOT NULL DEFAULT now(),
    update_time           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT entity_agent_tenant_code_key UNIQUE (tenant_id, agent_code)
);
CREATE INDEX IF NOT EXISTS entity_agent_provider_idx ON entity_agent (provider_id);

CREATE TABLE IF NOT EXISTS entity_session (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL,
    user_id     uuid NOT NULL,
    agent_id    uuid,
    title       text,
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- the last seq handed out; bumped in the same statement that inserts a message
    last_seq    bigint NOT NULL DEFAULT 0 CONSTRAINT entity_session_last_seq_check CHECK (last_seq >= 0),
    create_time timestamptz NOT NULL DEFAULT now(),
    update_time timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS entity_session_user_recent_idx
    ON entity_session (tenant_id, user_id, update_time DESC);

CREATE TABLE IF NOT EXISTS entity_message (
    id                uuid PRIMARY KEY,
    session_id        uuid NOT NULL REFERENCES entity_session (id) ON DELETE CASCADE,
    tenant_id         uuid NOT NULL,
    user_id           uuid NOT NULL,
    agent_id          uuid,
    seq               bigint NOT NULL CONSTRAINT entity_message_seq_check CHECK (seq > 0),
    role              text NOT NULL
        CONSTRAINT entity_message_role_check CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    content           text NOT NULL,
    status            text NOT NULL DEFAULT 'complete'
        CONSTRAINT entity_message_status_check
        CHECK (status IN ('complete', 'streaming', 'cancelled', 'error', 'interrupted')),
    metadata          jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- text and jsonb refuse U+0000: rows whose content or metadata hold one are stored escaped
    nul_escaped       boolean NOT NULL DEFAULT false,
    parent_message_id uuid,
    create_time       timestamptz NOT NULL DEFAULT now(),
    update_time       timestamptz NOT NULL DEFAULT now(),
    -- "the last K messages of a session" is a backward range scan of this index
    CONSTRAINT entity_message_session_seq_key UNIQUE (session_id, seq)
);

CREATE TABLE IF NOT EXISTS entity_api_call (
    id                        uuid PRIMARY KEY,
    tenant_id                 uuid NOT NULL,
    session_id                uuid NOT NULL REFERENCES entity_session (id) ON DELETE CASCADE,
    user_id                   uuid NOT NULL,
    agent_id                  uuid,
    request_message_id        uuid,
    response_message_id       uuid,
    model_name                text NOT NULL,
    status                    text NOT NULL
        CONSTRAINT entity_api_call_status_check
        CHECK (status IN ('success', 'failed', 'timeout', 'rate_limited', 'cancelled')),
    error_message             text,
    error_code                text,
    prompt_tokens             integer NOT NULL DEFAULT 0
        CONSTRAINT entity_api_call_prompt_tokens_check CHECK (prompt_tokens >= 0),
    completion_tokens         integer NOT NULL DEFAULT 0
        CONSTRAINT entity_api_call_completion_tokens_check CHECK (completion_tokens >= 0),
    total_tokens              integer NOT NULL DEFAULT 0
        CONSTRAINT entity_api_call_total_tokens_check CHECK (total_tokens >= 0),
    prompt_tokens_details     jsonb,
    completion_tokens_details jsonb,
    tokens_estimated          boolean NOT NULL DEFAULT false,
    price                     numeric(20, 10) CONSTRAINT entity_api_call_price_check CHECK (price >= 0),
    price_details             jsonb,
    latency_ms                integer CONSTRAINT entity_api_call_latency_check CHECK (latency_ms >= 0),
    time_to_first_token_ms    integer CONSTRAINT entity_api_call_ttft_check CHECK (time_to_first_token_ms >= 0),
    tokens_per_second         double precision CONSTRAINT entity_api_call_tps_check CHECK (tokens_per_second >= 0),
    provider_response_id      text,
    create_time               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS entity_api_call_time_idx ON entity_api_call (tenant_id, create_time);
CREATE INDEX IF NOT EXISTS entity_api_call_session_idx ON entity_api_call (tenant_id, session_id, create_time);
CREATE INDEX IF NOT EXISTS entity_api_call_agent_idx ON entity_api_call (tenant_id, agent_id, create_time);
CREATE INDEX IF NOT EXISTS entity_api_call_user_idx ON entity_api_call (tenant_id, user_id, create_time);
CREATE INDEX IF NOT EXISTS entity_api_call_status_idx ON entity_api_call (tenant_id, status, create_time);
CREATE INDEX IF NOT EXISTS entity_api_call_model_idx ON entity_api_call (tenant_id, model_name, create_time);

INSERT INTO mofa_migrations (name) VALUES ('0001_init') ON CONFLICT DO NOTHING;

-- ---- migration 0002_streaming_index -------------------------------------------------------------
-- Replies still streaming are few; resuming a session looks for them (to mark the stale ones interrupted).
-- Without this partial index that lookup read every row of the session.
CREATE INDEX IF NOT EXISTS entity_message_streaming_idx ON entity_message (session_id) WHERE status = 'streaming';

INSERT INTO mofa_migrations (name) VALUES ('0002_streaming_index') ON CONFLICT DO NOTHING;

-- ---- migration 0004_api_keys ----------------------------------------------------------------------
-- Tenant API keys for `mofa serve`. Only a SHA-256 hash of each key is stored (see persistence/_api_keys.py);
-- key_hint (the key's last 4 characters) only helps a person tell keys apart in `mofa keys list`.
-- Not under row-level security: the hash is how a request's tenant is found, before any tenant is known.
CREATE TABLE IF NOT EXISTS entity_api_key (
    id             uuid PRIMARY KEY,
    tenant_id      uuid NOT NULL,
    user_id        uuid NOT NULL,
    name           text NOT NULL DEFAULT '',
    key_hash       text NOT NULL CONSTRAINT entity_api_key_hash_key UNIQUE,
    key_hint       text NOT NULL,
    create_time    timestamptz NOT NULL DEFAULT now(),
    last_used_time timestamptz,
    revoke_time    timestamptz
);
CREATE INDEX IF NOT EXISTS entity_api_key_tenant_idx ON entity_api_key (tenant_id, create_time DESC);

INSERT INTO mofa_migrations (name) VALUES ('0004_api_keys') ON CONFLICT DO NOTHING;

COMMIT;
