-- A message or api call may only point at a session of its own tenant, an agent only at a provider of its own
-- tenant. Foreign-key checks ignore row-level security: with keys on the id alone, a tenant could attach rows to
-- another tenant's session (and learn from the error whether the id exists). A key on (tenant_id, id) refuses
-- another tenant's parent exactly as it refuses a missing one.
--
-- Rows that already break this (written around the store, e.g. by hand) stop the migration with nothing changed.
DO $check$
DECLARE
    n_messages bigint;
    n_calls    bigint;
    n_agents   bigint;
BEGIN
    SELECT count(*) INTO n_messages FROM entity_message m
        WHERE NOT EXISTS (SELECT 1 FROM entity_session s WHERE s.id = m.session_id AND s.tenant_id = m.tenant_id);
    SELECT count(*) INTO n_calls FROM entity_api_call c
        WHERE NOT EXISTS (SELECT 1 FROM entity_session s WHERE s.id = c.session_id AND s.tenant_id = c.tenant_id);
    SELECT count(*) INTO n_agents FROM entity_agent a
        WHERE NOT EXISTS (SELECT 1 FROM entity_provider p WHERE p.id = a.provider_id AND p.tenant_id = a.tenant_id);
    IF n_messages + n_calls + n_agents > 0 THEN
        RAISE EXCEPTION 'migration 0003_tenant_foreign_keys: % message(s) and % api call(s) belong to another '
            'tenant than their session, % agent(s) to another tenant than their provider; nothing was changed. '
            'Delete or correct those rows (docs/reliability.md, "Round 2: tenancy", has the queries), then migrate '
            'again', n_messages, n_calls, n_agents
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
END
$check$;

ALTER TABLE entity_session ADD CONSTRAINT entity_session_tenant_id_key UNIQUE (tenant_id, id);
ALTER TABLE entity_provider ADD CONSTRAINT entity_provider_tenant_id_key UNIQUE (tenant_id, id);

ALTER TABLE entity_message
    DROP CONSTRAINT entity_message_session_id_fkey,
    ADD CONSTRAINT entity_message_session_fkey FOREIGN KEY (tenant_id, session_id)
        REFERENCES entity_session (tenant_id, id) ON DELETE CASCADE;
ALTER TABLE entity_api_call
    DROP CONSTRAINT entity_api_call_session_id_fkey,
    ADD CONSTRAINT entity_api_call_session_fkey FOREIGN KEY (tenant_id, session_id)
        REFERENCES entity_session (tenant_id, id) ON DELETE CASCADE;
ALTER TABLE entity_agent
    DROP CONSTRAINT entity_agent_provider_id_fkey,
    ADD CONSTRAINT entity_agent_provider_fkey FOREIGN KEY (tenant_id, provider_id)
        REFERENCES entity_provider (tenant_id, id) ON DELETE RESTRICT;
