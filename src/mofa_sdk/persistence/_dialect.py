"""What differs between the SQL databases, as data and small functions; the SQL stores are written once over it.

The stores write every statement once, with named ``:name`` placeholders. A dialect says how those reach its
driver, how each column kind (:data:`._tables.Kind`) is written and read, and holds the few fragments that
are not standard SQL (full-text search, percentiles, the schema catalogue). :class:`SqliteDialect` is the
reference; ``_postgres_sql.PostgresDialect`` is the other one (kept there, so that SQLite never loads psycopg).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

from ..ids import as_utc
from ._migrations import SQLITE_COLUMNS_SQL, SQLITE_INDEXES_SQL
from ._tables import Kind

__all__ = ["Dialect", "SqliteDialect", "dumps"]


# one encoder: json.dumps with options builds a new one per call, and every JSON column of every row is dumped
_ENCODE = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode


def dumps(value: Any) -> str:
    """JSON as Python writes it, UTF-8 left as it is."""
    return _ENCODE(value)


def _identity(value: Any) -> Any:
    return value


class Dialect:
    """Standard SQL; a dialect sets the fragments below and overrides what its database does differently."""

    #: the store's ``dialect`` name, and the folder of its migrations
    name: str
    #: the messages a search reads (alias ``m``), and the condition matching them to the ``:query`` parameter
    search_from: str
    search_match: str
    #: the migrations table in this dialect, and a statement returning a row when table ``:name`` exists
    migrations_ddl: str
    table_exists_sql: str
    #: the current schema's (table, column) pairs and index names, for the schema check
    columns_sql: str
    indexes_sql: str
    #: the tool calls of message ``m`` as rows ``c`` (a FROM item), a call's id, and the calls' order
    tool_calls_from = "json_each(m.tool_calls) AS c"
    tool_call_id = "json_extract(c.value, '$.id')"
    tool_call_order = "c.key"
    #: one statement can bump the session's ``last_seq`` and insert the message (a data-modifying WITH)
    seq_in_insert = False
    #: aggregates (after a comma) computing p50/p95 of latency and time to first token; empty: Python does it
    percentiles = ""
    #: the condition matching sessions whose id ends with a fragment: ``:suffix`` is ``%`` + fragment, ``:rlo`` /
    #: ``:rhi`` bound the fragment reversed (for a dialect that indexes the reversed id)
    id_suffix_match = "id LIKE :suffix"
    #: run first in the transaction of a statement that aggregates many rows (statistics); empty: none
    analytics_setup = ""
    #: run first in the transaction of a message search; empty: none
    search_setup = ""
    #: how each kind is written and read, where it is not passed as it is
    to_db_of: ClassVar[dict[str, Callable[[Any], Any]]] = {}
    from_db_of: ClassVar[dict[str, Callable[[Any], Any]]] = {}

    def sql(self, text: str) -> str:
        """A statement as the driver takes it."""
        return text

    def placeholder(self, name: str, kind: Kind) -> str:
        """The parameter ``name`` in a value list (typed, where an untyped NULL would not do)."""
        return ":" + name

    def id_text(self, column: str) -> str:
        """An id column as its canonical text (with dashes), to match fragments against."""
        return column

    def time_bucket(self, unit: str) -> str:
        """The start of the ``unit`` ("hour", "day" or "week", UTC; weeks start on Monday) holding ``create_time``,
        as a time column."""
        raise NotImplementedError

    def search_query(self, words: list[str]) -> str:
        """The ``:query`` parameter finding messages with every one of ``words``."""
        return " ".join(words)

    def to_db(self, kind: Kind, value: Any) -> Any:
        return None if value is None else self.to_db_of.get(kind, _identity)(value)

    def from_db(self, kind: Kind, value: Any) -> Any:
        return None if value is None else self.from_db_of.get(kind, _identity)(value)

    def encode_nul(self, content: str, metadata: dict[str, Any]) -> tuple[str, dict[str, Any], bool]:
        """``(content, metadata, nul_escaped)`` as a message row stores them."""
        return content, metadata, False

    def decode_nul(self, content: str, metadata: dict[str, Any], escaped: bool) -> tuple[str, dict[str, Any]]:
        return content, metadata

    def needs_rewrite(self, content: Any, metadata: Any) -> bool:
        """An update that may change how the whole message row is stored (read, merge, re-encode, write)."""
        return False

    def message_set(self, column: str, kind: Kind, value: Any) -> tuple[str, dict[str, Any]]:
        """The SET clause and parameters writing ``value`` to a message's content or metadata in place."""
        return f"{column} = :{column}", {column: self.to_db(kind, value)}

    def json_append(self, column: str, items: list[Any]) -> tuple[str, dict[str, Any]]:
        """The SET clause and parameters appending ``items`` to the JSON array in ``column``, in one statement
        (a read-modify-write could lose what a concurrent writer appended)."""
        raise NotImplementedError


def _sqlite_time(dt: datetime) -> str:
    # fixed width: isoformat always writes four digits of year and, with this timespec, six of microseconds;
    # a UTC time ends in "+00:00", written "Z"
    return as_utc(dt).isoformat(timespec="microseconds")[:-6] + "Z"


class SqliteDialect(Dialect):
    """uuids as text, UTC times as fixed-width text (``%Y-%m-%dT%H:%M:%S.%fZ``, so text order is time
    order), JSON as text, booleans as integers."""

    name = "sqlite"
    search_from = "entity_message_fts f JOIN entity_message m ON m.rowid = f.rowid"
    search_match = "entity_message_fts MATCH :query"
    migrations_ddl = "CREATE TABLE IF NOT EXISTS mofa_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
    table_exists_sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :name"
    columns_sql = SQLITE_COLUMNS_SQL
    indexes_sql = SQLITE_INDEXES_SQL
    to_db_of: ClassVar[dict[str, Callable[[Any], Any]]] = {
        "uuid": str,
        "time": _sqlite_time,
        "json": dumps,
        "bool": int,
    }
    from_db_of: ClassVar[dict[str, Callable[[Any], Any]]] = {
        "uuid": uuid.UUID,
        "time": datetime.fromisoformat,
        "json": json.loads,
        "bool": bool,
        "numeric": float,
    }

    def time_bucket(self, unit: str) -> str:
        # the stored text is fixed-width UTC: the bucket is written back in that same form
        day = "strftime('%Y-%m-%dT00:00:00.000000Z', create_time{})"
        return {
            "hour": "strftime('%Y-%m-%dT%H:00:00.000000Z', create_time)",
            "day": day.format(""),
            # the Sunday ending the week, less six days: its Monday
            "week": day.format(", 'weekday 0', '-6 days'"),
        }[unit]

    def json_append(self, column: str, items: list[Any]) -> tuple[str, dict[str, Any]]:
        # '$[#]' is the end of the array as it is when that pair is applied: the items land in order
        pairs = ", ".join(f"'$[#]', json(:{column}_{i})" for i in range(len(items)))
        return f"{column} = json_insert({column}, {pairs})", {f"{column}_{i}": dumps(v) for i, v in enumerate(items)}

    def search_query(self, words: list[str]) -> str:
        # each word quoted: FTS5 syntax in the text is not interpreted, and the words are AND-ed
        return " ".join('"' + w.replace('"', '""') + '"' for w in words)
