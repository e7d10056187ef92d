"""Tenant isolation: every read and write API called with another tenant's ids finds or changes nothing
(all three stores); the schema refuses a child row whose parent belongs to another tenant (both databases,
migration 0003); and PostgreSQL row-level security enforces it inside the database against raw SQL of the
application role, which cannot pick another tenant for a transaction the store has bound."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from pydantic import SecretStr

from mofa_sdk.entities import Agent, LLMApiCall, Message, Provider, QueryFilter, Session
from mofa_sdk.errors import ConfigError, NotFoundError, TenantMismatchError, ValidationError
from mofa_sdk.ids import utc_now
from mofa_sdk.persistence import PersistenceContext, PostgresStore, SqliteStore, Store
from mofa_sdk.persistence._migrations import POSTGRES_MIGRATIONS_DDL, load_migrations
from tests.support.cli import Cli
from tests.support.pgbouncer import PgBouncer
from tests.support.roles import enable_rls


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


# -- the schema: a child row points at a parent of its own tenant (migration 0003) ----------------------
def _message_row(session_id: uuid.UUID, tenant: uuid.UUID, seq: int) -> dict[str, Any]:
    now = utc_now().isoformat()
    return {"id": str(uuid.uuid4()), "session_id": str(session_id), "tenant_id": str(tenant),
            "user_id": str(uuid.uuid4()), "seq": seq, "role": "user", "content": "injected",
            "create_time": now, "update_time": now}


def _call_row(session_id: uuid.UUID, tenant: uuid.UUID) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "tenant_id": str(tenant), "session_id": str(session_id),
            "user_id": str(uuid.uuid4()), "model_name": "m", "status": "success",
            "create_time": utc_now().isoformat()}


def _agent_row(provider_id: uuid.UUID, tenant: uuid.UUID) -> dict[str, Any]:
    now = utc_now().isoformat()
    return {"id": str(uuid.uuid4()), "tenant_id": str(tenant), "agent_code": f"c{uuid.uuid4().hex[:6]}",
            "agent_name": "x", "model_name": "m", "provider_id": str(provider_id), "create_time": now,
            "update_time": now}


def _insert_sql(table: str, row: dict[str, Any], mark: Callable[[str], str]) -> str:
    return f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join(mark(k) for k in row)})"


def raw_insert(conn: Any, table: str, row: dict[str, Any]) -> None:
    """One row written around the store, as an application role could with SQL of its own."""
    if isinstance(conn, sqlite3.Connection):
        conn.execute(_insert_sql(table, row, lambda k: f":{k}"), row)
    else:
        conn.execute(_insert_sql(table, row, lambda k: f"%({k})s"), row)


def refusal(conn: Any, table: str, row: dict[str, Any], parent_id: uuid.UUID, bind: bool) -> tuple[Any, ...]:
    """Insert ``row`` expecting the foreign key to refuse it; the error, with the parent id blanked out,
    so a refusal for an existing parent of another tenant and one for no parent at all compare equal.
    ``bind``: first bind the transaction to the row's tenant, as the store does with row-level security."""
    if isinstance(conn, sqlite3.Connection):
        with pytest.raises(sqlite3.IntegrityError) as info:
            raw_insert(conn, table, row)
        return (type(info.value), str(info.value).replace(str(parent_id), "<id>"))
    with pytest.raises(psycopg.errors.ForeignKeyViolation) as pg_info, conn.transaction():
        if bind:
            conn.execute("SELECT mofa_bind_tenant(%s)", (row["tenant_id"],))
        raw_insert(conn, table, row)
    diag = pg_info.value.diag
    return (pg_info.value.sqlstate, diag.message_primary, (diag.message_detail or "").replace(str(parent_id), "<id>"))


async def pending(store: Store) -> list[str]:
    return [name for name, when in await store.migration_status() if when is None]


def raw_connect(kind: str, pg_url: str, sqlite_path: Path) -> Any:
    if kind == "sqlite":
        conn = sqlite3.connect(sqlite_path, isolation_level=None)
        conn.execute("PRAGMA foreign_keys = ON")
        return conn
    return psycopg.connect(pg_url, autocommit=True)


def assert_parents_checked(conn: Any, tenant_b: uuid.UUID, a: dict[str, Any], *, bind: bool = False) -> None:
    """Tenant B cannot hang rows on tenant A's session or provider, and the refusal is word for word the
    one for a parent that does not exist."""
    sid, pid, missing = a["session"].id, a["provider"].id, uuid.uuid4()
    checks: tuple[tuple[str, Callable[[uuid.UUID], dict[str, Any]], uuid.UUID], ...] = (
        ("entity_message", lambda p: _message_row(p, tenant_b, 3), sid),
        ("entity_api_call", lambda p: _call_row(p, tenant_b), sid),
        ("entity_agent", lambda p: _agent_row(p, tenant_b), pid),
    )
    for table, row_of, parent in checks:
        foreign = refusal(conn, table, row_of(parent), parent, bind)
        assert foreign == refusal(conn, table, row_of(missing), missing, bind), table


async def test_a_child_row_needs_a_parent_of_its_own_tenant(
    db_store: Store, sqlite_path: Path, request: pytest.FixtureRequest
) -> None:
    a_tenant, b_tenant = uuid.uuid4(), uuid.uuid4()
    a = await seed(db_store, a_tenant)
    before = await snapshot(db_store, a_tenant, a)
    kind = "sqlite" if isinstance(db_store, SqliteStore) else "postgres"
    # on PostgreSQL the owner, whom no row-level security gets in the way of: the keys alone refuse
    conn = raw_connect(kind, request.getfixturevalue("pg_url") if kind == "postgres" else "", sqlite_path)
    try:
        assert_parents_checked(conn, b_tenant, a)
    finally:
        conn.close()
    # A's next write works: B left no row behind to collide with A's next seq
    nxt = await db_store.save_message(Message(session_id=a["session"].id, tenant_id=a_tenant, user_id=a["user"],
                                              role="user", content="next"))
    assert nxt.seq == 3
    after = await snapshot(db_store, a_tenant, a)
    assert after[0][:2] == before[0] and after[2:] == before[2:]
    assert await db_store.delete_session(a_tenant, a["session"].id)  # the composite keys still cascade
    assert await db_store.get_session_messages(a_tenant, a["session"].id) == []
    assert await db_store.query_api_calls(QueryFilter(tenant_id=a_tenant, session_id=a["session"].id)) == []


# -- migrating a database at 0002 that holds rows ---------------------------------------------------------
async def at_0002(kind: str, pg_url: str, sqlite_path: Path) -> Store:
    """A database migrated to 0002 only (as a deployment of the previous release), opened unmigrated."""
    first = [m for m in load_migrations("postgres" if kind == "postgres" else "sqlite") if m.name < "0003"]
    if kind == "sqlite":
        with sqlite3.connect(sqlite_path) as conn:
            conn.execute("CREATE TABLE mofa_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
            for m in first:
                conn.executescript(m.sql)
                conn.execute("INSERT INTO mofa_migrations VALUES (?, ?)", (m.name, utc_now().isoformat()))
        return await SqliteStore.connect(f"sqlite:///{sqlite_path}", migrate=False)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(POSTGRES_MIGRATIONS_DDL)
        for m in first:
            conn.execute(m.sql.encode())
            conn.execute("INSERT INTO mofa_migrations (name) VALUES (%s)", (m.name,))
    return await PostgresStore.connect(pg_url, migrate=False)


_OLD_TABLES = ("entity_provider", "entity_agent", "entity_session", "entity_message", "entity_api_call")


def seed_0002(conn: Any, tenant: uuid.UUID) -> dict[str, Any]:
    """What :func:`seed` writes, in plain SQL: today's store writes columns later migrations add."""
    now, user = utc_now().isoformat(), uuid.uuid4()
    provider = {"id": str(uuid.uuid4()), "tenant_id": str(tenant), "provider_name": "main",
                "provider_type": "openai", "create_time": now, "update_time": now}
    agent = _agent_row(uuid.UUID(provider["id"]), tenant)
    session = {"id": str(uuid.uuid4()), "tenant_id": str(tenant), "user_id": str(user), "agent_id": agent["id"],
               "title": "mine", "last_seq": 2, "create_time": now, "update_time": now}
    messages = [{**_message_row(uuid.UUID(session["id"]), tenant, n), "user_id": str(user)} for n in (1, 2)]
    call = {**_call_row(uuid.UUID(session["id"]), tenant), "user_id": str(user),
            "request_message_id": messages[0]["id"], "response_message_id": messages[1]["id"]}
    for table, row in (("entity_provider", provider), ("entity_agent", agent), ("entity_session", session),
                       ("entity_message", messages[0]), ("entity_message", messages[1]), ("entity_api_call", call)):
        raw_insert(conn, table, row)
    return {"user": user, "provider": Provider(tenant_id=tenant, id=uuid.UUID(provider["id"]), provider_name="main",
                                                provider_type="openai"),
            "session": Session(id=uuid.UUID(session["id"]), tenant_id=tenant, user_id=user)}


def snapshot_0002(conn: Any, tenant: uuid.UUID, like: dict[str, list[dict[str, Any]]] | None = None) -> Any:
    """The tenant's rows as the database holds them (only the columns of ``like``'s rows, when given)."""
    mark = "?" if isinstance(conn, sqlite3.Connection) else "%s"
    out: dict[str, list[dict[str, Any]]] = {}
    for table in _OLD_TABLES:
        # messages as the tenant's sessions hold them (a stray row of this tenant in another's session is not)
        where = f" AND session_id IN (SELECT id FROM entity_session WHERE tenant_id = {mark})" * (
            table == "entity_message"
        )
        params = (str(tenant),) * (2 if where else 1)
        cur = conn.execute(f"SELECT * FROM {table} WHERE tenant_id = {mark}{where} ORDER BY id", params)
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        if like is not None:
            rows = [{k: row[k] for k in old} for row, old in zip(rows, like[table], strict=True)]
        out[table] = rows
    return out


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_migrating_0002_with_rows(kind: str, fresh_pg_url: str, sqlite_path: Path) -> None:
    store = await at_0002(kind, fresh_pg_url, sqlite_path)

    def raw_snapshots(like: list[Any] | None = None) -> list[Any]:
        conn = raw_connect(kind, fresh_pg_url, sqlite_path)
        try:
            return [snapshot_0002(conn, t, None if like is None else like[i]) for i, t in enumerate(tenants)]
        finally:
            conn.close()

    try:
        assert "0003_tenant_foreign_keys" in await pending(store)
        tenants = [uuid.uuid4(), uuid.uuid4()]
        conn = raw_connect(kind, fresh_pg_url, sqlite_path)
        try:
            seeded = [seed_0002(conn, t) for t in tenants]
        finally:
            conn.close()
        before = raw_snapshots()

        # a row that crosses tenants (the 0002 schema let it in) stops the migration, changing nothing
        stray = _message_row(seeded[0]["session"].id, tenants[1], 3)
        conn = raw_connect(kind, fresh_pg_url, sqlite_path)
        try:
            raw_insert(conn, "entity_message", stray)
        finally:
            conn.close()
        with pytest.raises(ValidationError, match=r"0003_tenant_foreign_keys: .*another tenant") as info:
            await store.migrate()
        assert "nothing was changed" in str(info.value)
        assert "0003_tenant_foreign_keys" in await pending(store)
        assert raw_snapshots() == before
        conn = raw_connect(kind, fresh_pg_url, sqlite_path)
        try:
            mark = "?" if kind == "sqlite" else "%s"
            assert conn.execute(f"SELECT count(*) FROM entity_message WHERE id = {mark}",
                                (stray["id"],)).fetchone()[0] == 1
            conn.execute(f"DELETE FROM entity_message WHERE id = {mark}", (stray["id"],))
        finally:
            conn.close()

        assert "0003_tenant_foreign_keys" in await store.migrate()
        assert await pending(store) == []
        assert raw_snapshots(before) == before
        conn = raw_connect(kind, fresh_pg_url, sqlite_path)
        try:
            assert_parents_checked(conn, tenants[1], seeded[0])
            if kind == "sqlite":
                assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
                assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        finally:
            conn.close()
        # the store keeps working on the migrated rows
        for t, ids in zip(tenants, seeded, strict=True):
            m = await store.save_message(Message(session_id=ids["session"].id, tenant_id=t, user_id=ids["user"],
                                                 role="user", content="after"))
            assert m.seq == 3
    finally:
        await store.close()
    if kind == "sqlite":  # and a fresh open (migrating by default) has nothing left to do
        again = await SqliteStore.connect(f"sqlite:///{sqlite_path}")
        try:
            assert await again.migrate() == []
        finally:
            await again.close()


# -- PostgreSQL row-level security ----------------------------------------------------------------------
@pytest.fixture
async def rls_store(app_role: str) -> AsyncIterator[PostgresStore]:
    store = await PostgresStore.connect_with_options(app_role, row_level_security=True)
    try:
        yield store
    finally:
        await store.close()


def _count(conn: psycopg.Connection[Any], table: str, tenant: uuid.UUID | None = None) -> int:
    """The rows of ``table`` the connection's role can see (of ``tenant``, if given)."""
    where = "" if tenant is None else " WHERE tenant_id = %s"
    row = conn.execute(f"SELECT count(*) FROM {table}{where}", () if tenant is None else (tenant,)).fetchone()
    assert row is not None
    return int(row[0])


async def test_row_level_security_keeps_tenants_apart(rls_store: PostgresStore, app_role: str) -> None:
    await assert_isolated(rls_store)  # the store works as before, one tenant per transaction
    t1, t2 = uuid.uuid4(), uuid.uuid4()
    ids1 = await seed(rls_store, t1)
    await seed(rls_store, t2)

    # the database itself refuses to cross tenants, whatever SQL the application role sends
    with psycopg.connect(app_role) as conn:
        assert _count(conn, "entity_message") == 0  # no tenant bound: nothing at all
        conn.execute("SELECT mofa_bind_tenant(%s)", (t2,))
        assert _count(conn, "entity_message") == 2 and _count(conn, "entity_session") == 1  # only t2's rows
        for table in ("entity_provider", "entity_agent", "entity_api_call"):
            assert _count(conn, table) == 1
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
        conn.execute("SELECT mofa_bind_tenant(%s)", (t1,))  # a new transaction may serve another tenant
        assert _count(conn, "entity_message") == 2 and _count(conn, "entity_message", t2) == 0
        conn.rollback()

    # a store of that role that does not bind the tenant sees (and writes) nothing
    blind = await PostgresStore.connect_with_options(app_role, row_level_security=False)
    try:
        assert await blind.get_session_messages(t1, ids1["session"].id) == []
        with pytest.raises(NotFoundError):
            await blind.save_message(Message(session_id=ids1["session"].id, tenant_id=t1,
                                             user_id=ids1["user"], role="user", content="x"))
    finally:
        await blind.close()
    assert [m.content for m in await rls_store.get_session_messages(t1, ids1["session"].id)] == ["q", "a"]


async def test_set_config_of_another_tenant_reads_nothing(rls_store: PostgresStore, app_role: str) -> None:
    """The policies read no setting the role can give itself: ``set_config('mofa.tenant_id', …)`` of
    another tenant shows nothing of it, in a transaction bound to the role's tenant or in none."""
    a_tenant, b_tenant = uuid.uuid4(), uuid.uuid4()
    a, b = await seed(rls_store, a_tenant), await seed(rls_store, b_tenant)
    tables = ("entity_provider", "entity_agent", "entity_session", "entity_message", "entity_api_call")
    with psycopg.connect(app_role) as conn:
        for local in (True, False):
            conn.execute("SELECT set_config('mofa.tenant_id', %s, %s)", (str(a_tenant), local))
            assert {t: _count(conn, t) for t in tables} == dict.fromkeys(tables, 0)
            conn.rollback()
        conn.execute("SELECT mofa_bind_tenant(%s)", (b_tenant,))
        conn.execute("SELECT set_config('mofa.tenant_id', %s, true)", (str(a_tenant),))
        assert {t: _count(conn, t, a_tenant) for t in tables} == dict.fromkeys(tables, 0)
        assert _count(conn, "entity_message", b_tenant) == 2
        # once bound, the transaction keeps its tenant
        with pytest.raises(psycopg.Error) as info:
            conn.execute("SELECT mofa_bind_tenant(%s)", (a_tenant,))
        assert info.value.sqlstate == "MOFA1"
        conn.rollback()
        # and the binding itself cannot be written, although the role was granted the table
        conn.execute("SELECT mofa_bind_tenant(%s)", (b_tenant,))
        cur = conn.execute("UPDATE mofa_tenant_binding SET tenant_id = %s", (a_tenant,))
        assert cur.rowcount == 0 and _count(conn, "entity_message", a_tenant) == 0
        conn.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO mofa_tenant_binding VALUES (pg_backend_pid(), pg_current_xact_id(), %s)",
                         (a_tenant,))
        conn.rollback()
        assert _count(conn, "mofa_tenant_binding") == 0

    # the same through the tx= API: SQL run after the store bound the caller's transaction to B cannot
    # switch it to A, and the store refuses an operation of A in it
    async with await psycopg.AsyncConnection.connect(app_role) as aconn:
        await rls_store.update_session(b_tenant, b["session"].id, title="b's", tx=aconn)
        await aconn.execute("SELECT set_config('mofa.tenant_id', %s, true)", (str(a_tenant),))
        cur2 = await aconn.execute("SELECT count(*) FROM entity_message WHERE session_id = %s", (a["session"].id,))
        assert (await cur2.fetchone()) == (0,)
        with pytest.raises(TenantMismatchError, match="another tenant"):
            await rls_store.update_session(a_tenant, a["session"].id, title="hijacked", tx=aconn)
        await aconn.rollback()
    assert (await rls_store.get_session(a_tenant, a["session"].id)).title == "mine"  # type: ignore[union-attr]


async def test_another_tenant_cannot_insert_into_a_session(rls_store: PostgresStore, app_role: str) -> None:
    """Foreign-key checks ignore row-level security: the keys on (tenant_id, …) are what refuses tenant B's
    rows in tenant A's session, with the same error as for a session that does not exist."""
    a_tenant, b_tenant = uuid.uuid4(), uuid.uuid4()
    a = await seed(rls_store, a_tenant)
    before = await snapshot(rls_store, a_tenant, a)
    with psycopg.connect(app_role, autocommit=True) as conn:
        assert_parents_checked(conn, b_tenant, a, bind=True)
        with conn.transaction():
            conn.execute("SELECT mofa_bind_tenant(%s)", (b_tenant,))
            assert _count(conn, "entity_message") == 0  # nothing of B's was left anywhere
    # A's next write works (before 0003, B's rows took A's next seqs and it failed with ConflictError)
    nxt = await rls_store.save_message(Message(session_id=a["session"].id, tenant_id=a_tenant, user_id=a["user"],
                                               role="assistant", content="next"))
    assert nxt.seq == 3
    assert (await snapshot(rls_store, a_tenant, a))[0][:2] == before[0]


async def test_a_pinned_login_role_serves_its_tenant_only(
    secured: str, make_role: Callable[[], str]
) -> None:
    """Per-tenant credentials: a role pinned with ``enable-rls --pin`` cannot bind any other tenant."""
    mine, other = uuid.uuid4(), uuid.uuid4()
    url = make_role()
    role = urlsplit(url).username
    output = await enable_rls(secured, "--pin", f"{role}={mine}")
    assert f"login role {role} may only serve tenant {mine}" in output
    store = await PostgresStore.connect_with_options(url, row_level_security=True)
    try:
        ids = await seed(store, mine)
        with pytest.raises(TenantMismatchError, match="is pinned to another tenant"):
            await store.list_providers(other)
        with pytest.raises(TenantMismatchError):
            await store.create_session(Session(tenant_id=other, user_id=uuid.uuid4()))
        assert [p.id for p in await store.list_providers(mine)] == [ids["provider"].id]
    finally:
        await store.close()
    with psycopg.connect(url) as conn:
        with pytest.raises(psycopg.Error) as info:
            conn.execute("SELECT mofa_bind_tenant(%s)", (other,))
        assert info.value.sqlstate == "MOFA1"
    # a bad --pin is refused before anything is changed
    bad = await Cli(secured, uuid.uuid4(), uuid.uuid4())("db", "enable-rls", "--db", secured, "--pin", "nobody")
    assert bad.exit_code != 0 and "ROLE=TENANT" in bad.output
    bad = await Cli(secured, uuid.uuid4(), uuid.uuid4())(
        "db", "enable-rls", "--db", secured, "--pin", f"no_such_role_{uuid.uuid4().hex[:6]}={mine}"
    )
    assert bad.exit_code != 0 and "there is no role" in bad.output


async def test_row_level_security_refuses_a_role_it_would_not_apply_to(
    fresh_pg_url: str, make_role: Callable[[], str]
) -> None:
    """row_level_security=True where nothing would be enforced is a ConfigError, not a false sense of
    safety: a schema where enable-rls never ran, the owner (the policies do not apply to it), a role that
    can become a BYPASSRLS role, a role holding TRUNCATE (which no policy stops)."""
    owner = await PostgresStore.connect(fresh_pg_url)
    await owner.close()
    app = make_role()
    with pytest.raises(ConfigError, match="run `mofa db enable-rls`"):
        await PostgresStore.connect_with_options(app, row_level_security=True)
    await enable_rls(fresh_pg_url)
    with pytest.raises(ConfigError, match=r"is not subject to row-level security .*owner of, entity_agent"):
        await PostgresStore.connect_with_options(fresh_pg_url, row_level_security=True)
    store = await PostgresStore.connect_with_options(app, row_level_security=True)
    await store.close()

    role = urlsplit(app).username
    bypasser = f"mofa_bypass_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(fresh_pg_url, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{bypasser}" NOLOGIN BYPASSRLS')
        conn.execute(f'GRANT "{bypasser}" TO "{role}"')  # SET ROLE would walk around every policy
    try:
        with pytest.raises(ConfigError, match=f"can become the superuser or BYPASSRLS role {bypasser}"):
            await PostgresStore.connect_with_options(app, row_level_security=True)
    finally:
        with psycopg.connect(fresh_pg_url, autocommit=True) as conn:
            conn.execute(f'DROP ROLE "{bypasser}"')
    with psycopg.connect(fresh_pg_url, autocommit=True) as conn:
        conn.execute(f'GRANT TRUNCATE ON entity_message, mofa_tenant_binding TO "{role}"')
    with pytest.raises(ConfigError, match="TRUNCATE on entity_message, TRUNCATE on mofa_tenant_binding"):
        await PostgresStore.connect_with_options(app, row_level_security=True)


async def test_bindings_do_not_leak_through_a_transaction_pooler(app_role: str) -> None:
    """PgBouncer in transaction mode with one server connection: every transaction of two tenants runs on
    the same backend (same pid), one after another; each sees its own tenant's rows only."""
    bouncer = PgBouncer(app_role, pool_size=1).start()
    try:
        store = await PostgresStore.connect_with_options(
            bouncer.url, row_level_security=True, prepare_threshold=None, max_connections=4
        )
        try:
            tenants = [uuid.uuid4(), uuid.uuid4()]
            seeded = {t: await seed(store, t) for t in tenants}

            async def reads(t: uuid.UUID) -> None:
                for _ in range(15):
                    msgs = await store.get_session_messages(t, seeded[t]["session"].id)
                    assert [m.tenant_id for m in msgs] == [t, t]
                    assert [p.tenant_id for p in await store.list_providers(t)] == [t]

            await asyncio.gather(*(reads(t) for t in tenants * 3))
            pids = set()
            for _ in range(3):  # one server connection behind every client connection
                with psycopg.connect(bouncer.url, prepare_threshold=None, autocommit=True) as conn:
                    pids.add(conn.execute("SELECT pg_backend_pid()").fetchone())
                    assert _count(conn, "entity_message") == 0  # no tenant left bound
            assert len(pids) == 1
        finally:
            await store.close()
    finally:
        bouncer.stop()
