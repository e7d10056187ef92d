"""Numbered, append-only SQL migrations shipped inside the package, one folder per dialect.

``migrations/<dialect>/NNNN_name.sql`` files are applied in name order; each applied name is recorded in
the ``mofa_migrations`` table so a migration runs once per database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from ..errors import ConfigError

__all__ = ["DIALECTS", "MIGRATIONS_TABLE", "POSTGRES_MIGRATIONS_DDL", "Migration", "load_migrations"]

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
