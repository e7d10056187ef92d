"""With row-level security on, the service sets the tenant in the database session of every store call: the
policies' WITH CHECK refuses any row written without it, so a turn that is saved proves it."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import httpx2
import psycopg

from mofa_sdk.persistence import PostgresStore
from tests.server.support import Launcher, auth, make_key, read_events, text_of


async def test_turns_under_row_level_security(
    launcher: Launcher, client: httpx2.AsyncClient, fresh_pg_url: str, app_role: str
) -> None:
    owner = await PostgresStore.connect(fresh_pg_url)  # migrates, as the owner
    await owner.enable_row_level_security()
    await owner.close()
    role = urlsplit(app_role).username
    with psycopg.connect(fresh_pg_url, autocommit=True) as conn:
        schema = conn.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
        conn.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
        conn.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"')
    server = await launcher.scripted(app_role, "--rls", "--words", "8")
    key, row = await make_key(fresh_pg_url)
    sid = (await client.post(f"{server.url}/v1/sessions", json={}, headers=auth(key))).json()["id"]
    async with client.stream("POST", f"{server.url}/v1/sessions/{sid}/messages", json={"content": "hi"},
                             headers=auth(key)) as r:
        events, _ = await read_events(r)
    assert events[-1].event == "done", events[-1]
    msgs = (await client.get(f"{server.url}/v1/sessions/{sid}/messages", headers=auth(key))).json()["data"]
    assert [m["role"] for m in msgs] == ["user", "assistant"] and msgs[1]["content"] == text_of(events)
    # the application role sees nothing without a tenant, and this tenant's rows with it
    with psycopg.connect(app_role, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM entity_message").fetchone()[0] == 0  # type: ignore[index]
        with conn.transaction():
            conn.execute("SELECT mofa_bind_tenant(%s)", (row.tenant_id,))
            assert conn.execute("SELECT count(*) FROM entity_message").fetchone()[0] == 2  # type: ignore[index]
    other, _ = await make_key(fresh_pg_url, tenant=uuid.uuid4())
    assert (await client.get(f"{server.url}/v1/sessions/{sid}", headers=auth(other))).status_code == 404
