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
