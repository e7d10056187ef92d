"""Numbered, append-only SQL migrations shipped inside the package, one folder per dialect.

``migrations/<dialect>/NNNN_name.sql`` files are applied in name order; each applied name is recorded in
the ``mofa_migrations`` table so a migration runs once per database. The table says what was applied, not
what is there: :func:`schema_problems` compares a database's tables, columns and indexes with what the
migrations create, to catch a schema altered by hand.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

from ..errors import ConfigError

__all__ = [
    "DIALECTS",
    "MIGRATIONS_TABLE",
    "POSTGRES_MIGRATIONS_DDL",
    "SQLITE_COLUMNS_SQL",
    "SQLITE_INDEXES_SQL",
    "Migration",
    "SchemaShape",
    "expected_shape",
    "load_migrations",
    "schema_problems",
    "shape_of",
]

MIGRATIONS_TABLE = "mofa_migrations"
DIALECTS = ("postgres", "sqlite")

#: the PostgreSQL migrations table (the SQLite store writes its own dialect of it)
POSTGRES_MIGRATIONS_DDL = (
    "CREATE TABLE IF NOT EXISTS mofa_migrations ("
    "name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
)

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    """One migration: ``name`` is the file name without ``.sql`` (e.g. ``0001_init``)."""

    name: str
    sql: str


def load_migrations(dialect: str) -> list[Migration]:
    """The migrations of ``dialect`` ("postgres" or "sqlite"), sorted by name."""
    if dialect not in DIALECTS:
        raise ConfigError(f"unknown migration dialect {dialect!r}; expected one of {', '.join(DIALECTS)}")
    folder = resources.files("mofa_sdk.persistence").joinpath("migrations", dialect)
    found: list[Migration] = []
    numbers: dict[str, str] = {}
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _NAME.match(entry.name)
        if match is None:
            # a stray file would otherwise be applied in a surprising order, or never
            raise ConfigError(f"migration file {dialect}/{entry.name} is not named NNNN_name.sql")
        number = match.group(1)
        if number in numbers:
            raise ConfigError(f"migrations {numbers[number]} and {entry.name} share the number {number}")
        numbers[number] = entry.name
        found.append(Migration(name=entry.name.removesuffix(".sql"), sql=entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.name)


@dataclass(frozen=True)
class SchemaShape:
    """The names that make up a schema: each table's columns, and the indexes made by CREATE INDEX."""

    tables: dict[str, frozenset[str]]
    indexes: frozenset[str]


#: an SQLite database's (table, column) pairs, and the indexes made by CREATE INDEX (those SQLite makes for
#: UNIQUE constraints have no SQL, and PostgreSQL names them differently). A full-text index (a virtual
#: table and its shadow tables, named after it) is SQLite's own way to search and is not part of the shape
#: both dialects share: PostgreSQL searches through an index instead.
SQLITE_COLUMNS_SQL = (
    "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p WHERE m.type = 'table'"
    " AND m.sql NOT LIKE 'CREATE VIRTUAL TABLE%' AND NOT EXISTS (SELECT 1 FROM sqlite_master v"
    " WHERE v.type = 'table' AND v.sql LIKE 'CREATE VIRTUAL TABLE%' AND substr(m.name, 1, length(v.name) + 1)"
    " = v.name || '_')"
)
SQLITE_INDEXES_SQL = "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"


def shape_of(columns: Iterable[tuple[str, str]], indexes: Iterable[str]) -> SchemaShape:
    """A shape from (table, column) pairs and index names."""
    tables: dict[str, set[str]] = {}
    for table, column in columns:
        tables.setdefault(table, set()).add(column)
    return SchemaShape({t: frozenset(c) for t, c in tables.items()}, frozenset(indexes))


@functools.cache
def expected_shape() -> SchemaShape:
    """What the migrations create, read off a private in-memory SQLite database they are applied to.
    Both dialects create the same tables, columns and index names (the PostgreSQL dialect may add more)."""
    conn = sqlite3.connect(":memory:")
    try:
        for m in load_migrations("sqlite"):
            conn.executescript(m.sql)
        return shape_of(
            conn.execute(SQLITE_COLUMNS_SQL).fetchall(), [r[0] for r in conn.execute(SQLITE_INDEXES_SQL)]
        )
    finally:
        conn.close()


def schema_problems(actual: SchemaShape) -> list[str]:
    """What ``actual`` lacks of :func:`expected_shape`, one sentence each (extra tables, columns and
    indexes are left alone: they may be the application's own)."""
    expected = expected_shape()
    problems: list[str] = []
    for table, columns in sorted(expected.tables.items()):
        found = actual.tables.get(table)
        if found is None:
            problems.append(f"table {table} is missing")
            continue
        missing = sorted(columns - found)
        if missing:
            problems.append(f"table {table} has no column {', '.join(missing)}")
    problems.extend(f"index {name} is missing" for name in sorted(expected.indexes - actual.indexes))
    return problems
