"""Migration 0011 (issue 28): a database left at 0009 with rows in it gains the read-path indexes, loses the
ones they replace, reads its rows as before; on PostgreSQL the plans use the new indexes."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import psycopg

from mofa_sdk.entities import QueryFilter
from mofa_sdk.persistence import PostgresStore, SqliteStore, Store
from mofa_sdk.persistence._dialect import SqliteDialect
from mofa_sdk.persistence._migrations import MIGRATIONS_TABLE, POSTGRES_MIGRATIONS_DDL, load_migrations

TENANT, USER = uuid.uuid4(), uuid.uuid4()
SID = uuid.UUID("0193abcd-1234-7000-8000-00000000beef")
NEW = {"entity_session_user_recent_id_idx", "entity_session_user_id_idx", "entity_message_user_recent_idx",
       "entity_api_call_usage_idx", "entity_api_call_user_usage_idx", "entity_api_call_age_idx"}  # fmt: skip
GONE = {"entity_session_user_recent_idx", "entity_api_call_time_idx", "entity_api_call_user_idx"}
ROWS = [
    ("INSERT INTO entity_session (id, tenant_id, user_id, title, last_seq, create_time, update_time)"
     " VALUES (?, ?, ?, 'old', 1, '2026-01-01T00:00:00.000000Z', '2026-01-02T00:00:00.000000Z')", (SID, TENANT, USER)),
    ("INSERT INTO entity_api_call (id, tenant_id, session_id, user_id, model_name, status, total_tokens, create_time)"
     " VALUES (?, ?, ?, ?, 'm', 'success', 7, '2026-01-02T00:00:00.000000Z')", (uuid.uuid4(), TENANT, SID, USER)),
]  # fmt: skip


def _old_sqlite(path: Path) -> str:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(SqliteDialect.migrations_ddl)
        for m in load_migrations("sqlite"):
            if m.name > "0009_message_tool_columns":
                break
            conn.executescript(m.sql)
            conn.execute(f"INSERT INTO {MIGRATIONS_TABLE} VALUES (?, '2026-01-01T00:00:00.000000Z')", (m.name,))
        for sql, args in ROWS:
            conn.execute(sql, [str(a) for a in args])
    conn.close()
    return f"sqlite:///{path}"


def _old_postgres(url: str) -> str:
    with psycopg.connect(url) as conn:
        conn.execute(POSTGRES_MIGRATIONS_DDL)
        for m in load_migrations("postgres"):
            if m.name > "0009_message_tool_columns":
                break
            conn.execute(m.sql)
            conn.execute(f"INSERT INTO {MIGRATIONS_TABLE} (name) VALUES (%s)", (m.name,))
        for sql, args in ROWS:
            conn.execute(sql.replace("?", "%s"), args)
    return url


async def _reads_as_before(store: Store) -> None:
    assert await store.check_schema() == []
    page = await store.list_user_sessions(TENANT, USER)
    assert [s.title for s in page.items] == ["old"] and page.next is None
    assert [s.id for s in await store.find_sessions_by_id(TENANT, USER, "beef")] == [SID]
    assert (await store.get_statistics(QueryFilter(tenant_id=TENANT))).total_tokens == 7


async def test_0011_on_an_old_sqlite_database(tmp_path: Path) -> None:
    url = _old_sqlite(tmp_path / "old.db")
    store = await SqliteStore.connect(url)
    try:
        await _reads_as_before(store)
    finally:
        await store.close()
    conn = sqlite3.connect(tmp_path / "old.db")
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    conn.close()
    assert names >= NEW and not GONE & names


async def test_0011_on_an_old_postgres_database_and_its_plans(fresh_pg_url: str) -> None:
    store = await PostgresStore.connect(_old_postgres(fresh_pg_url))
    try:
        await _reads_as_before(store)
    finally:
        await store.close()
    with psycopg.connect(fresh_pg_url, autocommit=True) as conn:
        names = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")}
        assert NEW | {"entity_session_user_id_suffix_idx"} <= names and not GONE & names
        conn.execute("SET enable_seqscan = off")

        def plan(sql: str, *args: object) -> str:
            return "\n".join(r[0] for r in conn.execute(f"EXPLAIN {sql}", args).fetchall())

        listing = plan("SELECT id FROM entity_session WHERE tenant_id = %s AND user_id = %s"
                       " ORDER BY update_time DESC, id DESC LIMIT 50", TENANT, USER)  # fmt: skip
        assert "entity_session_user_recent_id_idx" in listing and "Sort" not in listing, listing
        suffix = plan("SELECT id FROM entity_session WHERE tenant_id = %s AND user_id = %s"
                      " AND reverse(id::text) COLLATE \"C\" >= %s AND reverse(id::text) COLLATE \"C\" < %s",
                      TENANT, USER, "feeb", "feeb~")  # fmt: skip
        assert "entity_session_user_id_suffix_idx" in suffix, suffix
        age = plan("SELECT id FROM entity_api_call WHERE create_time < now() LIMIT 5000")
        assert "entity_api_call_age_idx" in age, age
