-- Tenant API keys for `mofa serve`. Only a SHA-256 hash of each key is stored (see persistence/_api_keys.py);
-- key_hint (the key's last 4 characters) only helps a person tell keys apart in `mofa keys list`.
CREATE TABLE IF NOT EXISTS entity_api_key (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    name           TEXT NOT NULL DEFAULT '',
    key_hash       TEXT NOT NULL CONSTRAINT entity_api_key_hash_key UNIQUE,
    key_hint       TEXT NOT NULL,
    create_time    TEXT NOT NULL,
    last_used_time TEXT,
    revoke_time    TEXT
);
CREATE INDEX IF NOT EXISTS entity_api_key_tenant_idx ON entity_api_key (tenant_id, create_time DESC);
