"""Migrations that move internal protocols out of user metadata (issue 21): a database left at an older
migration, with rows written the old way, is migrated, and the values land in their columns, odd ones
dropped, never failing the migration. On PostgreSQL and SQLite."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mofa_sdk.entities import SessionSettings, SettingsChange
from mofa_sdk.llm import check_tool_sequence
from mofa_sdk.persistence import PostgresStore, SqliteStore, Store
from mofa_sdk.persistence._dialect import SqliteDialect
from mofa_sdk.persistence._migrations import MIGRATIONS_TABLE, POSTGRES_MIGRATIONS_DDL, load_migrations
from mofa_sdk.persistence._plugin import _load_window

TENANT, USER = uuid.uuid4(), uuid.uuid4()


class OldDatabase:
    """A database at migration ``last``, written to with plain SQL as the library wrote rows then."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind, self.url = kind, url

    @contextmanager
    def _conn(self) -> Iterator[Any]:
        if self.kind == "postgres":
            with psycopg.connect(self.url) as pg:
                yield pg
        else:
            lite = sqlite3.connect(self.url.removeprefix("sqlite:///"))
            try:
                with lite:
                    yield lite
            finally:
                lite.close()

    def migrate_to(self, last: str) -> None:
        with self._conn() as conn:
            ddl = POSTGRES_MIGRATIONS_DDL if self.kind == "postgres" else SqliteDialect.migrations_ddl
            conn.execute(ddl)
            for m in load_migrations(self.kind):
                if m.name > last:
                    break
                if self.kind == "postgres":
                    conn.execute(m.sql)
                    conn.execute(f"INSERT INTO {MIGRATIONS_TABLE} (name) VALUES (%s)", (m.name,))
                else:
                    conn.executescript(m.sql)
                    conn.execute(
                        f"INSERT INTO {MIGRATIONS_TABLE} (name, applied_at) VALUES (?, ?)",
                        (m.name, "2026-01-01T00:00:00.000000Z"),
                    )

    def insert(self, table: str, row: dict[str, Any]) -> None:
        values = {
            k: (json.dumps(v) if isinstance(v, dict | list) else str(v) if isinstance(v, uuid.UUID) else v)
            for k, v in row.items()
        }
        if self.kind == "sqlite":
            values.setdefault("create_time", "2026-01-01T00:00:00.000000Z")
            values.setdefault("update_time", "2026-01-01T00:00:00.000000Z")
        mark = "%s" if self.kind == "postgres" else "?"
        sql = f"INSERT INTO {table} ({', '.join(values)}) VALUES ({', '.join([mark] * len(values))})"
        with self._conn() as conn:
            conn.execute(sql, list(values.values()))

    def session(self, metadata: dict[str, Any] | list[Any]) -> uuid.UUID:
        sid = uuid.uuid4()
        self.insert("entity_session", {"id": sid, "tenant_id": TENANT, "user_id": USER, "metadata": metadata})
        return sid


@pytest.fixture(params=["sqlite", "postgres"])
def old_db(request: pytest.FixtureRequest, tmp_path: Path) -> OldDatabase:
    if request.param == "sqlite":
        return OldDatabase("sqlite", f"sqlite:///{tmp_path / 'old.db'}")
    return OldDatabase("postgres", str(request.getfixturevalue("fresh_pg_url")))


async def _migrated(db: OldDatabase) -> Store:
    if db.kind == "postgres":
        return await PostgresStore.connect(db.url)
    return await SqliteStore.connect(db.url)


OLD_AT = "2026-03-04T05:06:07.123456+00:00"


async def test_0007_moves_session_settings_out_of_metadata(old_db: OldDatabase) -> None:
    old_db.migrate_to("0006_json_as_written")
    # as PersistencePlugin.session_settings wrote them before 0007
    cli = old_db.session({
        "channel": "web",
        "settings": {"agent": None, "provider": "local x.gguf", "model": "m", "system_prompt": "Be brief.",
                     "window": None},
        "settings_changes": [{"at": OLD_AT, "changed": {"window": {"from": 2, "to": None},
                                                        "model": {"from": "a", "to": "m"}}}],
    })  # fmt: skip
    library = old_db.session({"settings": {"system_prompt": "You are a pirate."}})
    # odd values a user (or an older tool) left: dropped, never failing the migration
    odd = old_db.session({
        "settings": {"window": -1, "max_tokens": 0, "model": 5, "agent": ["x"], "colour": "red", "provider": "p"},
        "settings_changes": [
            5, "text", {"at": 5, "changed": {"a": {"from": 1, "to": 2}}},
            {"at": "2026-02-30T00:00:00", "changed": {"b": {"from": 1, "to": 2}}},
            {"at": "yesterday", "changed": {"c": {}}}, {"at": OLD_AT, "changed": "everything"},
            {"at": OLD_AT, "changed": {"d": 7, "e": {"to": True}}},
        ],
    })  # fmt: skip
    not_a_dict = old_db.session({"settings": "fast", "settings_changes": {"no": "list"}, "other": [1]})
    untouched = old_db.session({"user": {"settings": {"nested": "stays"}}})

    store = await _migrated(old_db)
    try:
        assert await store.check_schema() == []
        s = await store.get_session(TENANT, cli)
        assert s is not None
        assert s.metadata == {"channel": "web"}
        assert s.settings == SessionSettings(
            agent=None, provider="local x.gguf", model="m", system_prompt="Be brief.", window=None
        )
        at = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
        assert s.settings_changes == [
            SettingsChange(at=at, key="window", old=2, new=None),
            SettingsChange(at=at, key="model", old="a", new="m"),
        ]

        s = await store.get_session(TENANT, library)
        assert s is not None and s.metadata == {} and s.settings_changes == []
        assert s.settings is not None and s.settings.model_fields_set == {"system_prompt"}

        s = await store.get_session(TENANT, odd)
        assert s is not None and s.metadata == {}
        assert s.settings is not None and s.settings.model_dump(exclude_unset=True) == {"provider": "p"}
        assert s.settings_changes == [SettingsChange(at=datetime.fromisoformat(OLD_AT), key="e", old=None, new=True)]

        s = await store.get_session(TENANT, not_a_dict)
        assert s is not None and s.metadata == {"other": [1]}
        assert s.settings is None and s.settings_changes == []

        s = await store.get_session(TENANT, untouched)
        assert s is not None and s.metadata == {"user": {"settings": {"nested": "stays"}}} and s.settings is None

        # the migrated session goes on recording: the changes append to the migrated ones
        await store.record_session_settings(
            TENANT, cli, SessionSettings(model="n"), [SettingsChange(key="model", old="m", new="n")]
        )
        s = await store.get_session(TENANT, cli)
        assert s is not None and [c.key for c in s.settings_changes] == ["window", "model", "model"]
    finally:
        await store.close()


OLD_REQUEST = {"created_at": 1767225600, "model": "m", "instructions": None, "metadata": {"k": "v"},
               "temperature": 0.5, "input_ids": ["x"]}  # fmt: skip


async def test_0008_moves_offsets_and_request_params_out_of_metadata(old_db: OldDatabase) -> None:
    old_db.migrate_to("0007_session_settings")
    sid = old_db.session({})
    seq = iter(range(1, 100))

    def message(role: str, metadata: Any, **extra: Any) -> uuid.UUID:
        mid = uuid.uuid4()
        old_db.insert("entity_message", {"id": mid, "session_id": sid, "tenant_id": TENANT, "user_id": USER,
                                         "seq": next(seq), "role": role, "content": "Hello!",
                                         "metadata": metadata, **extra})  # fmt: skip
        return mid

    # as mofa serve wrote them before 0008
    asked = message("user", {"channel": "web", "openai_response": OLD_REQUEST})
    replied = message("assistant", {"delta_ends": [5, 6], "mine": 1.5})
    # odd values: dropped, never failing the migration
    odd_ends = [message("assistant", {"delta_ends": v}) for v in ([1, -2], [1, "2"], [1.5], "5,6", {"a": 1}, None)]
    odd_request = message("user", {"openai_response": ["not", "an", "object"]})
    empty = message("assistant", {"delta_ends": []})
    untouched = message("user", {"user": {"delta_ends": [1]}})
    message("user", [1, 2])  # not a dict: left alone

    store = await _migrated(old_db)
    try:
        assert await store.check_schema() == []

        async def row(mid: uuid.UUID) -> Any:
            found = await store.get_message(TENANT, mid)
            assert found is not None
            return found

        m = await row(asked)
        assert (m.metadata, m.request_params, m.delta_ends) == ({"channel": "web"}, OLD_REQUEST, None)
        m = await row(replied)
        assert (m.metadata, m.request_params, m.delta_ends) == ({"mine": 1.5}, None, [5, 6])
        for mid in odd_ends:
            m = await row(mid)
            assert (m.metadata, m.delta_ends) == ({}, None)
        m = await row(odd_request)
        assert (m.metadata, m.request_params) == ({}, None)
        m = await row(empty)
        assert (m.metadata, m.delta_ends) == ({}, [])
        m = await row(untouched)
        assert (m.metadata, m.delta_ends, m.request_params) == ({"user": {"delta_ends": [1]}}, None, None)
    finally:
        await store.close()


async def test_0008_keeps_escaped_request_params_in_metadata(fresh_pg_url: str) -> None:
    """A PostgreSQL row stored NUL-escaped has its metadata strings in the escaped form: its request stays."""
    db = OldDatabase("postgres", fresh_pg_url)
    db.migrate_to("0007_session_settings")
    sid = db.session({})
    mid = uuid.uuid4()
    metadata = {"openai_response": {"instructions": "a\\0b"}, "delta_ends": [1]}
    db.insert("entity_message", {"id": mid, "session_id": sid, "tenant_id": TENANT, "user_id": USER, "seq": 1,
                                 "role": "user", "content": "x", "metadata": metadata, "nul_escaped": True})
    store = await _migrated(db)
    try:
        m = await store.get_message(TENANT, mid)
        assert m is not None
        assert m.metadata == {"openai_response": {"instructions": "a\x00b"}} and m.delta_ends == [1]
        assert m.request_params is None
    finally:
        await store.close()


async def test_a_replys_api_call_is_read_through_its_index(fresh_pg_url: str) -> None:
    store = await PostgresStore.connect(fresh_pg_url)
    await store.close()
    with psycopg.connect(fresh_pg_url, autocommit=True) as conn:
        # a tenant with some calls, analysed: on an empty table every index costs the same and the planner
        # picks any (the covering usage index of 0011, say)
        sid = uuid.uuid4()
        conn.execute("INSERT INTO entity_session (id, tenant_id, user_id) VALUES (%s, %s, %s)", (sid, TENANT, USER))
        conn.execute(
            "INSERT INTO entity_api_call (id, tenant_id, session_id, user_id, response_message_id, model_name, status)"
            " SELECT gen_random_uuid(), %s, %s, %s, gen_random_uuid(), 'm', 'success' FROM generate_series(1, 2000)",
            (TENANT, sid, USER),
        )
        conn.execute("ANALYZE entity_api_call")
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT id FROM entity_api_call WHERE tenant_id = %s AND response_message_id = %s"
            " ORDER BY create_time DESC, id DESC LIMIT 1", (TENANT, uuid.uuid4())
        ).fetchall())  # fmt: skip
    assert "entity_api_call_response_idx" in plan, plan


async def test_0009_old_rows_read_as_text(old_db: OldDatabase) -> None:
    """Rows stored before messages had tool fields read with none: no calls, no result, no parts. An old
    ``tool`` row (the role existed, its call id did not) reads with no call id."""
    old_db.migrate_to("0008_message_protocol_columns")
    sid = old_db.session({})
    rows = [("user", "What is 2+2?"), ("assistant", "Let me compute."), ("tool", "4"), ("assistant", "It is 4.")]
    ids = []
    for seq, (role, content) in enumerate(rows, 1):
        ids.append(uuid.uuid4())
        old_db.insert("entity_message", {"id": ids[-1], "session_id": sid, "tenant_id": TENANT, "user_id": USER,
                                         "seq": seq, "role": role, "content": content, "metadata": {}})
    store = await _migrated(old_db)
    try:
        assert await store.check_schema() == []
        found = await store.get_session_messages(TENANT, sid)
        assert [(m.role, m.content) for m in found] == rows
        assert all((m.tool_calls, m.tool_call_id, m.is_error, m.parts) == ([], None, False, []) for m in found)
        # the old tool row names no call: it is not sent (an orphan result is a 400 on strict providers)
        history = await _load_window(store, TENANT, sid, None)
        check_tool_sequence(history)
        assert [(m.role, m.content) for m in history] == [rows[0], rows[1], rows[3]]
    finally:
        await store.close()
