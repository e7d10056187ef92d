"""Tenant isolation: every read and write API called with another tenant's ids finds or changes nothing
(all three stores), and PostgreSQL row-level security enforces it inside the database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from pydantic import SecretStr

from mofa_sdk.entities import Agent, LLMApiCall, Message, Provider, QueryFilter, Session
from mofa_sdk.errors import NotFoundError, TenantMismatchError
from mofa_sdk.ids import utc_now
from mofa_sdk.persistence import PersistenceContext, PostgresStore, Store
from tests.cli.helpers import Cli


async def seed(store: Store, tenant: uuid.UUID) -> dict[str, Any]:
    user = uuid.uuid4()
    p = await store.create_provider(
        Provider(tenant_id=tenant, provider_name="main", provider_type="openai", api_key=SecretStr("sk-a"))
    )
    a = await store.create_agent(
        Agent(tenant_id=tenant, agent_code="chat", agent_name="Chat", model_name="m", provider_id=p.id)
    )
    s = await store.create_session(Session(tenant_id=tenant, user_id=user, agent_id=a.id, title="mine"))
    m1 = await store.save_message(Message(session_id=s.id, tenant_id=tenant, user_id=user, role="user", content="q"))
    m2 = await store.save_message(
        Message(session_id=s.id, tenant_id=tenant, user_id=user, role="assistant", content="a", status="streaming")
    )
    c = await store.save_api_call(
        LLMApiCall(tenant_id=tenant, session_id=s.id, user_id=user, model_name="m", status="success",
                   request_message_id=m1.id, response_message_id=m2.id)
    )
    return {"user": user, "provider": p, "agent": a, "session": s, "messages": [m1, m2], "call": c}


async def snapshot(store: Store, tenant: uuid.UUID, ids: dict[str, Any]) -> Any:
    sid = ids["session"].id
    return (
        [m.model_dump() for m in await store.get_session_messages(tenant, sid)],
        (await store.get_session(tenant, sid)).model_dump(),  # type: ignore[union-attr]
        [c.model_dump() for c in await store.query_api_calls(QueryFilter(tenant_id=tenant))],
        [p.model_dump(exclude={"api_key"}) for p in await store.list_providers(tenant)],
        [a.model_dump() for a in await store.list_agents(tenant)],
    )


async def assert_isolated(store: Store) -> None:
    """Tenant B, holding every id of tenant A, reads nothing of A's and changes nothing of A's."""
    a_tenant, b = uuid.uuid4(), uuid.uuid4()
    ids = await seed(store, a_tenant)
    before = await snapshot(store, a_tenant, ids)
    sid, user = ids["session"].id, ids["user"]
    m1 = ids["messages"][0]
    pid, aid, cid = ids["provider"].id, ids["agent"].id, ids["call"].id

    # reads
    assert await store.get_message(b, m1.id) is None
    assert await store.get_session_messages(b, sid) == []
    assert await store.get_session_messages_paginated(b, sid, 0, 10) == []
    assert await store.get_last_messages(b, sid, 5) == []
    assert await store.count_session_messages(b, sid) == 0
    assert await store.get_session(b, sid) is None
    assert await store.get_user_sessions(b, user) == []
    assert await store.get_api_call(b, cid) is None
    assert await store.query_api_calls(QueryFilter(tenant_id=b, session_id=sid, user_id=user)) == []
    assert (await store.get_statistics(QueryFilter(tenant_id=b, session_id=sid))).total_calls == 0
    assert await store.get_provider(b, pid) is None
    assert await store.get_provider_by_name(b, "main") is None
    assert await store.list_providers(b) == [] and await store.get_enabled_providers(b) == []
    assert await store.get_agent(b, aid) is None
    assert await store.get_agent_by_code_and_tenant(b, "chat") is None
    assert await store.get_agent_by_code_and_tenant_with_provider(b, "chat") is None
    assert await store.list_agents(b) == [] and await store.get_active_agents(b) == []

    # writes
    with pytest.raises(NotFoundError):
        await store.update_message(b, m1.id, content="hijacked", status="error", metadata={"x": 1})
    assert await store.delete_message(b, m1.id) is False
    assert await store.delete_session_messages(b, sid) == 0
    assert await store.mark_interrupted(b, sid) == 0
    with pytest.raises(NotFoundError):
        await store.update_session(b, sid, title="hijacked", metadata={"x": 1})
    assert await store.delete_session(b, sid) is False
    foreign = Message(session_id=sid, tenant_id=b, user_id=user, role="user", content="injected")
    with pytest.raises(NotFoundError):
        await store.save_message(foreign)
    with pytest.raises(NotFoundError):
        await store.save_messages([foreign])
    with pytest.raises(NotFoundError):
        await store.save_api_call(LLMApiCall(tenant_id=b, session_id=sid, user_id=user, model_name="m",
                                             status="failed"))
    assert await store.cleanup_old_records(utc_now() + timedelta(days=1), tenant_id=b) == 0
    with pytest.raises(TenantMismatchError):
        await store.create_session(Session(id=sid, tenant_id=b, user_id=user))
    with pytest.raises(TenantMismatchError):
        await PersistenceContext.from_session(store, user, b, aid, sid)
    with pytest.raises(NotFoundError):
        await store.update_provider(ids["provider"].model_copy(update={"tenant_id": b, "provider_name": "x"}))
    assert await store.delete_provider(b, pid) is False
    with pytest.raises(NotFoundError):
        await store.create_agent(Agent(tenant_id=b, agent_code="c", agent_name="C", model_name="m", provider_id=pid))
    with pytest.raises(NotFoundError):
        await store.update_agent(ids["agent"].model_copy(update={"tenant_id": b, "agent_name": "x"}))
    assert await store.delete_agent(b, aid) is False

    assert await snapshot(store, a_tenant, ids) == before  # tenant A's rows are exactly as they were


async def test_another_tenant_finds_and_changes_nothing(store: Store) -> None:
    await assert_isolated(store)


# -- PostgreSQL row-level security ----------------------------------------------------------------------
@pytest.fixture
def app_role(fresh_pg_url: str) -> Iterator[str]:
    """A login role that does not own the tables (and is no superuser), granted the tables of a schema
    migrated by the owner. Yields its URL."""
    role = f"mofa_app_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(fresh_pg_url, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOBYPASSRLS')
    parts = urlsplit(fresh_pg_url)
    yield urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port or 5432}"))
    with psycopg.connect(fresh_pg_url, autocommit=True) as conn:
        conn.execute(f'DROP OWNED BY "{role}"')
        conn.execute(f'DROP ROLE "{role}"')


@pytest.fixture
async def rls_store(fresh_pg_url: str, app_role: str) -> AsyncIterator[PostgresStore]:
    owner = await PostgresStore.connect(fresh_pg_url)  # migrates, as the owner
    await owner.close()
    result = await Cli(fresh_pg_url, uuid.uuid4(), uuid.uuid4())("db", "enable-rls", "--db", fresh_pg_url)
    assert result.exit_code == 0, result.output
    assert "row-level security is on" in result.output and "entity_message" in result.output
    role = urlsplit(app_role).username
    with psycopg.connect(fresh_pg_url, autocommit=True) as conn:
        conn.execute("SELECT 1")  # the schema is first in the owner's search_path
        schema = conn.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
        conn.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
        conn.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"')
    store = await PostgresStore.connect_with_options(app_role, row_level_security=True)
    try:
        yield store
    finally:
        await store.close()


async def test_row_level_security_keeps_tenants_apart(rls_store: PostgresStore, app_role: str) -> None:
    await assert_isolated(rls_store)  # the store works as before, one tenant per transaction
    t1, t2 = uuid.uuid4(), uuid.uuid4()
    ids1 = await seed(rls_store, t1)
    await seed(rls_store, t2)

    # the database itself refuses to cross tenants, whatever SQL the application role sends
    with psycopg.connect(app_role) as conn:
        def count(table: str) -> int:
            return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index, no-any-return]

        assert count("entity_message") == 0  # no tenant set: nothing at all
        conn.execute("SELECT set_config('mofa.tenant_id', %s, true)", (str(t2),))
        assert count("entity_message") == 2 and count("entity_session") == 1  # only t2's rows
        for table in ("entity_provider", "entity_agent", "entity_api_call"):
            assert count(table) == 1
        cur = conn.execute("UPDATE entity_message SET content = 'x' WHERE session_id = %s", (ids1["session"].id,))
        assert cur.rowcount == 0
        cur = conn.execute("DELETE FROM entity_session WHERE id = %s", (ids1["session"].id,))
        assert cur.rowcount == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # WITH CHECK: no row for another tenant
            conn.execute(
                "INSERT INTO entity_session (id, tenant_id, user_id) VALUES (%s, %s, %s)",
                (uuid.uuid4(), t1, uuid.uuid4()),
            )
        conn.rollback()

    # a store of that role that does not set the tenant sees (and writes) nothing
    blind = await PostgresStore.connect_with_options(app_role, row_level_security=False)
    try:
        assert await blind.get_session_messages(t1, ids1["session"].id) == []
        with pytest.raises(NotFoundError):
            await blind.save_message(Message(session_id=ids1["session"].id, tenant_id=t1,
                                             user_id=ids1["user"], role="user", content="x"))
    finally:
        await blind.close()
    assert [m.content for m in await rls_store.get_session_messages(t1, ids1["session"].id)] == ["q", "a"]
