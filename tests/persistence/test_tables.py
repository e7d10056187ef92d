"""The table spec the SQL stores are written over agrees with the migrations and the entities, and the
stores' ``:name`` placeholders reach each driver in its form (psycopg's ``%(name)s``, SQLite's ``?`` by
position), leaving casts and literals alone."""

from __future__ import annotations

from typing import Any

import pytest

from mofa_sdk.persistence._migrations import expected_shape
from mofa_sdk.persistence._tables import AGENT, API_KEY, CALL, MESSAGE, PROVIDER, SESSION, Table

TABLES = [MESSAGE, SESSION, CALL, PROVIDER, AGENT, API_KEY]
#: columns a table has that no entity field maps to: the store reads and writes them itself
_STORE_ONLY = {"entity_session": {"last_seq", "active_run_id", "active_until"},  # 0012: the lease
               "entity_message": {"chain_hash"}}


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.name)
def test_every_column_the_migrations_create_is_in_the_spec(table: Table[Any]) -> None:
    created = expected_shape().tables[table.name]
    assert set(table.columns) == created - _STORE_ONLY.get(table.name, set())


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.name)
def test_every_entity_field_is_a_column(table: Table[Any]) -> None:
    assert set(table.entity.model_fields) == set(table.columns) - {"nul_escaped"}


def test_postgres_placeholders_leave_casts_and_literals_alone() -> None:
    from mofa_sdk.persistence._postgres_sql import DIALECT

    sql = "SELECT 1 WHERE a = :a AND b::text LIKE '%x' AND c = 'simple'::regconfig AND d = :d_2::uuid"
    assert DIALECT.sql(sql) == (
        "SELECT 1 WHERE a = %(a)s AND b::text LIKE '%%x' AND c = 'simple'::regconfig AND d = %(d_2)s::uuid"
    )


def test_sqlite_binds_by_position_leaving_literals_alone() -> None:
    from mofa_sdk.persistence._sqlite import _positional

    text, pick = _positional("SELECT ':not_a' WHERE a = :a AND b = 'it''s :x' AND c = :c AND d = :a")
    assert text == "SELECT ':not_a' WHERE a = ? AND b = 'it''s :x' AND c = ? AND d = ?"
    assert pick({"a": 1, "c": 2, "unused": 3}) == (1, 2, 1)
    one, pick_one = _positional("DELETE FROM t WHERE id = :id")
    assert (one, pick_one({"id": "x"})) == ("DELETE FROM t WHERE id = ?", ("x",))
    assert _positional("SELECT 1")[1]({"a": 1}) == ()
