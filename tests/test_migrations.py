"""Migrations: loading, applying on PostgreSQL, concurrency between processes, and the psql init script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import psycopg
import pytest

from mofa_sdk.errors import ConfigError, PersistenceError
from mofa_sdk.persistence._migrations import MIGRATIONS_TABLE, Migration, load_migrations
from mofa_sdk.persistence._postgres import PostgresStore

ROOT = Path(__file__).resolve().parent.parent
INIT_SCRIPT = ROOT / "scripts" / "sql" / "migrations" / "postgres_init.sql"
TABLES = {
    "entity_provider",
    "entity_agent",
    "entity_session",
    "entity_message",
    "entity_api_call",
    "entity_api_key",
    MIGRATIONS_TABLE,
}


def schema_of(url: str) -> str:
    return unquote(url).rsplit("search_path=", 1)[1]


def tables_in(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchall()
    return {r[0] for r in rows}


def catalog(url: str) -> dict[str, Any]:
    """Everything that makes up the schema, read from the catalogs with ``url``'s schema first in the
    search_path (so definitions print unqualified and two schemas compare equal)."""
    with psycopg.connect(url) as conn:
        schema = conn.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]

        def rows(query: str) -> list[tuple[Any, ...]]:
            return conn.execute(query, (schema,)).fetchall()

        return {
            "relations": rows(
                "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s ORDER BY 1"
            ),
            "columns": rows(
                "SELECT table_name, ordinal_position, column_name, data_type, udt_name, is_nullable,"
                " column_default, numeric_precision, numeric_scale FROM information_schema.columns"
                " WHERE table_schema = %s ORDER BY table_name, ordinal_position"
            ),
            "constraints": rows(
                "SELECT cl.relname, co.conname, co.contype, pg_get_constraintdef(co.oid)"
                " FROM pg_constraint co JOIN pg_class cl ON cl.oid = co.conrelid"
                " JOIN pg_namespace n ON n.oid = cl.relnamespace WHERE n.nspname = %s ORDER BY 1, 2"
            ),
            # indexdef names the table with its schema: drop it so that two schemas compare
            "indexes": conn.execute(
                "SELECT tablename, indexname, replace(indexdef, %s, '') FROM pg_indexes"
                " WHERE schemaname = %s ORDER BY 1, 2",
                (f"{schema}.", schema),
            ).fetchall(),
            "migrations": conn.execute(f"SELECT name FROM {MIGRATIONS_TABLE} ORDER BY name").fetchall(),
        }


def run_init_script(admin_url: str, schema: str) -> subprocess.CompletedProcess[str]:
    psql = shutil.which("psql")
    if psql is None:
        pytest.fail("psql is not installed: the init-script test needs the PostgreSQL client")
    env = {**os.environ, "PGOPTIONS": f"-csearch_path={schema}"}
    return subprocess.run(
        [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", admin_url, "-f", str(INIT_SCRIPT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


# -- loading ---------------------------------------------------------------------------------------
def test_load_migrations_sorted_and_named() -> None:
    pg = load_migrations("postgres")
    assert pg, "no PostgreSQL migrations shipped in the package"
    assert pg[0].name == "0001_init"
    assert [m.name for m in pg] == sorted(m.name for m in pg)
    assert all(isinstance(m, Migration) and m.sql.strip() for m in pg)
    assert "entity_message_session_seq_key" in pg[0].sql


def test_both_dialects_have_the_same_migrations() -> None:
    assert [m.name for m in load_migrations("sqlite")] == [m.name for m in load_migrations("postgres")]


def test_unknown_dialect_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="mysql"):
        load_migrations("mysql")


# -- applying --------------------------------------------------------------------------------------
async def test_blank_schema_migrates_once(fresh_pg_url: str) -> None:
    store = await PostgresStore.connect(fresh_pg_url, migrate=False)
    try:
        assert tables_in(fresh_pg_url) == set()
        assert await store.migration_status() == [(m.name, None) for m in load_migrations("postgres")]

        applied = await store.migrate()
        assert applied == [m.name for m in load_migrations("postgres")]
        assert tables_in(fresh_pg_url) == TABLES

        assert await store.migrate() == []
        status = await store.migration_status()
        assert [name for name, _ in status] == applied
        for _, when in status:
            assert when is not None and when.utcoffset() == timedelta(0)
    finally:
        await store.close()


async def test_connect_migrates_by_default(fresh_pg_url: str) -> None:
    store = await PostgresStore.connect(fresh_pg_url)
    try:
        assert tables_in(fresh_pg_url) == TABLES
        assert all(when is not None for _, when in await store.migration_status())
    finally:
        await store.close()


async def test_unmigrated_schema_says_how_to_fix_it(fresh_pg_url: str) -> None:
    import uuid

    store = await PostgresStore.connect(fresh_pg_url, migrate=False)
    try:
        with pytest.raises(PersistenceError, match="mofa db migrate") as info:
            await store.get_session(uuid.uuid4(), uuid.uuid4())
        assert isinstance(info.value.__cause__, psycopg.errors.UndefinedTable)
        assert store.pool_stats()["pool_available"] == store.pool_stats()["pool_size"]
    finally:
        await store.close()


MIGRATE_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from mofa_sdk.persistence._postgres import PostgresStore

    async def main() -> None:
        store = await PostgresStore.connect(sys.argv[1], migrate=False)
        try:
            # start together, to make the processes race for the schema
            time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
            print(json.dumps(await store.migrate()))
        finally:
            await store.close()

    asyncio.run(main())
    """
)


def test_processes_migrating_at_once_make_one_schema(fresh_pg_url: str) -> None:
    start = time.time() + 2.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE_SCRIPT, fresh_pg_url, str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for _ in range(4)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    for p, (_out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
    applied = [name for out, _ in results for name in json.loads(out.strip().splitlines()[-1])]
    # every migration applied exactly once across all the processes
    assert sorted(applied) == [m.name for m in load_migrations("postgres")]
    assert tables_in(fresh_pg_url) == TABLES


# -- the psql init script (generated by scripts/gen_postgres_init.py; CI checks it is current) -------
async def test_init_script_equals_migrations(pg_admin_url: str, pg_schema_factory: Any) -> None:
    by_script, by_migrations = pg_schema_factory(), pg_schema_factory()
    for _ in range(2):  # may be run twice
        done = run_init_script(pg_admin_url, schema_of(by_script))
        assert done.returncode == 0, done.stderr
    assert tables_in(by_script) == TABLES

    store = await PostgresStore.connect(by_migrations)
    await store.close()
    expected = catalog(by_migrations)
    assert all(expected[part] for part in expected), "the catalog query found nothing to compare"
    assert catalog(by_script) == expected

    with psycopg.connect(by_script) as conn:
        before = conn.execute(f"SELECT name, applied_at FROM {MIGRATIONS_TABLE} ORDER BY name").fetchall()
    store = await PostgresStore.connect(by_script)
    try:
        assert await store.migrate() == []
        assert [(n, w) for n, w in await store.migration_status()] == before
    finally:
        await store.close()


def test_init_script_is_one_transaction_without_extensions() -> None:
    text = INIT_SCRIPT.read_text()
    statements = [line.strip().upper() for line in text.splitlines() if not line.startswith("--")]
    assert "BEGIN;" in statements and statements[-1] == "COMMIT;"
    assert "CREATE EXTENSION" not in text.upper()
    for m in load_migrations("postgres"):
        assert f"('{m.name}') ON CONFLICT DO NOTHING" in text
