"""What is PostgreSQL's in the SQL store: its dialect, the migration lock, and row-level security.

Every statement here is built once, at import time, from constant fragments; values only ever travel as
parameters.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

from psycopg import sql
from psycopg.types.json import Json

from ._codec import _escape, _map_strings, decode_row, encode_row, has_nul
from ._dialect import Dialect, dumps
from ._migrations import POSTGRES_MIGRATIONS_DDL
from ._tables import MESSAGE, Kind

_TYPES: dict[str, str] = {
    "uuid": "uuid", "text": "text", "secret": "text", "int": "bigint", "float": "double precision",
    "numeric": "numeric", "bool": "boolean", "json": "json", "time": "timestamptz",
}  # fmt: skip
#: a ``:name`` placeholder (not the second colon of a ``::type`` cast)
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@functools.lru_cache(maxsize=1024)
def _pyformat(text: str) -> str:
    return _NAMED.sub(r"%(\1)s", text.replace("%", "%%"))


def _write_time(value: datetime) -> datetime:
    """A naive time is taken as UTC (the app clock is UTC), never as the server's local time."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _read_time(value: datetime) -> datetime:
    """The session's time zone may be anything; hand back UTC."""
    return value.astimezone(UTC)


def json_param(value: Any) -> Json:
    """A JSON parameter. The columns are ``json`` (migration 0006), which keep the text as written, so
    every number reads back as it went in: jsonb would turn 1e20 into an int, -0.0 into 0.0 and 1.5e300
    into a different integer, and reorder keys."""
    return Json(value, dumps=dumps)


class PostgresDialect(Dialect):
    """Native uuid, timestamptz, boolean; JSON as ``json``; U+0000, which ``text`` refuses, escaped (``_codec``)."""

    name = "postgres"
    seq_in_insert = True
    # the expression is the one 0005 indexes (GIN), so the index answers the match
    search_from = "entity_message m"
    search_match = "to_tsvector('simple'::regconfig, m.content) @@ plainto_tsquery('simple'::regconfig, :query)"
    migrations_ddl = POSTGRES_MIGRATIONS_DDL
    table_exists_sql = "SELECT 1 WHERE to_regclass(:name) IS NOT NULL"
    columns_sql = (
        "SELECT table_name::text, column_name::text FROM information_schema.columns"
        " WHERE table_schema = current_schema()"
    )
    indexes_sql = "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema()"
    # the expression entity_session_user_id_suffix_idx (0011) indexes: a suffix is a range of the reversed text
    id_suffix_match = "reverse(id::text) COLLATE \"C\" >= :rlo AND reverse(id::text) COLLATE \"C\" < :rhi"
    # JIT compiling took a third of a month's statistics (issue 28) and pays only for hours-long queries
    analytics_setup = "SET LOCAL jit = off"
    # A word that is neither common nor rare is answered by ANDing two bitmaps (the user's messages, the word's);
    # in the default 4 MB they turn lossy and every row of a lossy page is re-checked with to_tsvector: 813 ms
    # instead of 137 ms on 10 M messages (docs/benchmarks.md, "Growth"). Only for this transaction.
    search_setup = "SET LOCAL work_mem = '64MB'"
    tool_calls_from = "json_array_elements(m.tool_calls) WITH ORDINALITY AS c (value, n)"
    tool_call_id = "c.value ->> 'id'"
    tool_call_order = "c.n"
    percentiles = "".join(
        f", percentile_cont({p}) WITHIN GROUP (ORDER BY {c})"
        for c in ("latency_ms", "time_to_first_token_ms")
        for p in (0.5, 0.95)
    )
    to_db_of: ClassVar[dict[str, Callable[[Any], Any]]] = {"time": _write_time, "json": json_param}
    from_db_of: ClassVar[dict[str, Callable[[Any], Any]]] = {"time": _read_time, "numeric": float}

    def sql(self, text: str) -> str:
        return _pyformat(text)

    def placeholder(self, name: str, kind: Kind) -> str:
        # INSERT … SELECT needs the types: a None parameter has none of its own there
        return f":{name}::{_TYPES[kind]}"

    def id_text(self, column: str) -> str:
        return f"{column}::text"

    def time_bucket(self, unit: str) -> str:
        if unit not in ("hour", "day", "week"):  # a fixed fragment: never a caller's text
            raise ValueError(unit)
        return f"date_trunc('{unit}', create_time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"

    def encode_nul(self, content: str, metadata: dict[str, Any]) -> tuple[str, dict[str, Any], bool]:
        return encode_row(content, metadata)

    def decode_nul(self, content: str, metadata: dict[str, Any], escaped: bool) -> tuple[str, dict[str, Any]]:
        return decode_row(content, metadata, escaped)

    def needs_rewrite(self, content: Any, metadata: Any) -> bool:
        return (isinstance(content, str) and "\x00" in content) or (
            isinstance(metadata, dict) and has_nul(metadata)
        )

    def message_set(self, column: str, kind: Kind, value: Any) -> tuple[str, dict[str, Any]]:
        # A row already stored escaped stays escaped: the value is written in whichever form matches the row
        # (the forms differ only where the value holds a backslash).
        escaped = _map_strings(value, _escape)
        if escaped == value:
            return super().message_set(column, kind, value)
        return (
            f"{column} = CASE WHEN nul_escaped THEN :{column}_esc ELSE :{column} END",
            {column: self.to_db(kind, value), f"{column}_esc": self.to_db(kind, escaped)},
        )

    def json_append(self, column: str, items: list[Any]) -> tuple[str, dict[str, Any]]:
        # json (not jsonb, whose || would normalise the numbers): the elements as written, old then new
        return (
            f"{column} = (SELECT json_agg(v ORDER BY g, n) FROM (SELECT value, 1, ordinality FROM"  # noqa: S608
            f" json_array_elements({column}) WITH ORDINALITY UNION ALL SELECT value, 2, ordinality FROM"
            f" json_array_elements(:{column}::json) WITH ORDINALITY) AS t (v, g, n))",
            {column: json_param(items)},
        )


DIALECT = PostgresDialect()

#: what get_last_messages runs (positional, for EXPLAIN): a backward range scan of entity_message_session_seq_key
LAST_MESSAGES_SQL = (
    f"SELECT {MESSAGE.cols()} FROM entity_message"  # noqa: S608 (fixed column names)
    " WHERE session_id = %s AND tenant_id = %s ORDER BY seq DESC LIMIT %s"
)
LOCK_MESSAGE_SQL = (
    "SELECT content, metadata, nul_escaped FROM entity_message WHERE id = %s AND tenant_id = %s FOR UPDATE"
)
REWRITE_MESSAGE_SQL = (
    "UPDATE entity_message SET content = %s, metadata = %s, nul_escaped = %s, status = coalesce(%s, status),"
    " delta_ends = CASE WHEN %s THEN %s::json ELSE delta_ends END, update_time = %s, chain_hash = NULL"
    " WHERE id = %s AND tenant_id = %s"
)



def _q(template: str, **parts: sql.Composable) -> str:
    """Build a statement from our own constant fragments once, at import time (no user value ever)."""
    return sql.SQL(template).format(**parts).as_string(None)


# Two-key advisory lock: a constant class ("mofa" in ASCII) and the schema, so migrations of different
# schemas in one database do not wait for each other.
_LOCK_KEY = "1836017249, hashtext(coalesce(current_schema(), ''))"
XACT_LOCK_SQL = "SELECT pg_advisory_xact_lock(" + _LOCK_KEY + ")"

# -- row-level security (opt-in) ----------------------------------------------------------------------
# The tenant of a transaction is a row of mofa_tenant_binding, keyed by backend pid and written only by
# mofa_bind_tenant() (SECURITY DEFINER): no role but the owner can write the table. The binding is valid for
# the transaction that made it (its xid) and cannot be changed within it, so SQL run later in that transaction
# cannot switch tenants. The policies never read a setting a role can give itself (set_config). A login role
# listed in mofa_tenant_role can only ever bind its own tenant.
TENANT_TABLES = ("entity_provider", "entity_agent", "entity_session", "entity_message", "entity_api_call")
BIND_TENANT_SQL = "SELECT mofa_bind_tenant(%s)"
#: mofa_bind_tenant refuses a second tenant in one transaction, or a tenant a pinned login role may not serve
TENANT_REFUSED_SQLSTATE = "MOFA1"
_POLICY = "mofa_tenant_isolation"
# a sub-select: evaluated once per statement (an InitPlan), not once per row
_TENANT_MATCH = "tenant_id = (SELECT mofa_current_tenant())"

_RLS_SETUP = [
    "CREATE UNLOGGED TABLE IF NOT EXISTS mofa_tenant_binding ("
    " pid integer PRIMARY KEY, xact xid8 NOT NULL, tenant_id uuid NOT NULL)",
    "CREATE TABLE IF NOT EXISTS mofa_tenant_role (role_name text PRIMARY KEY, tenant_id uuid NOT NULL)",
    # RLS on and no policy: even a role granted these tables (GRANT … ON ALL TABLES) reads and writes no row
    "ALTER TABLE mofa_tenant_binding ENABLE ROW LEVEL SECURITY",
    "ALTER TABLE mofa_tenant_role ENABLE ROW LEVEL SECURITY",
    "REVOKE ALL ON mofa_tenant_binding, mofa_tenant_role FROM PUBLIC",
    # The two functions run as the owner with the caller's search_path, which the caller chooses: every
    # name in them is schema-qualified, operators included. (A SET search_path clause would cost more than
    # the rest of the lookup, on every statement.)
    """CREATE OR REPLACE FUNCTION mofa_bind_tenant(tenant uuid) RETURNS uuid
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $bind$
DECLARE
    tx     pg_catalog.xid8 := pg_catalog.pg_current_xact_id();
    bound  pg_catalog.uuid;
    pinned pg_catalog.uuid;
BEGIN
    IF tenant IS NULL THEN
        RAISE EXCEPTION 'mofa_bind_tenant: the tenant id is null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT r.tenant_id INTO pinned FROM {schema}.mofa_tenant_role r
        WHERE r.role_name OPERATOR(pg_catalog.=) session_user::pg_catalog.text;
    IF pinned IS NOT NULL AND pinned OPERATOR(pg_catalog.<>) tenant THEN
        RAISE EXCEPTION 'mofa_bind_tenant: login role % is pinned to another tenant', session_user
            USING ERRCODE = 'MOFA1';
    END IF;
    -- a row left by an earlier transaction of this backend (or of a dead one with the same pid) is replaced;
    -- one of this transaction is kept, and returns nothing
    INSERT INTO {schema}.mofa_tenant_binding AS b (pid, xact, tenant_id)
        VALUES (pg_catalog.pg_backend_pid(), tx, tenant)
        ON CONFLICT (pid) DO UPDATE SET xact = excluded.xact, tenant_id = excluded.tenant_id
            WHERE b.xact OPERATOR(pg_catalog.<>) excluded.xact
        RETURNING b.tenant_id INTO bound;
    IF bound IS NULL THEN
        SELECT b.tenant_id INTO bound FROM {schema}.mofa_tenant_binding b
            WHERE b.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid();
        IF bound OPERATOR(pg_catalog.<>) tenant THEN
            RAISE EXCEPTION 'mofa_bind_tenant: this transaction already serves another tenant '
                '(one transaction, one tenant)' USING ERRCODE = 'MOFA1';
        END IF;
    END IF;
    RETURN tenant;
END
$bind$""",
    # PARALLEL RESTRICTED: a parallel worker has a pid of its own, so only the leader may look the binding up
    """CREATE OR REPLACE FUNCTION mofa_current_tenant() RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER PARALLEL RESTRICTED AS $current$
SELECT b.tenant_id FROM {schema}.mofa_tenant_binding b
WHERE b.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()
    AND b.xact OPERATOR(pg_catalog.=) pg_catalog.pg_current_xact_id_if_assigned()
$current$""",
]

#: pin a login role to a tenant (replacing an earlier pin)
PIN_ROLE_SQL = (
    "INSERT INTO mofa_tenant_role (role_name, tenant_id) VALUES (%s, %s)"
    " ON CONFLICT (role_name) DO UPDATE SET tenant_id = excluded.tenant_id"
)
ROLE_CAN_LOGIN_SQL = "SELECT rolcanlogin FROM pg_roles WHERE rolname = %s"

#: privileges row-level security does not stop: TRUNCATE empties every tenant's rows, TRIGGER runs the
#: role's code as whoever writes (the owner's binding function included), REFERENCES lets a foreign key of
#: the role's own probe every tenant's ids
RLS_RISKY_PRIVILEGES = ("TRUNCATE", "TRIGGER", "REFERENCES")
_RLS_TABLES = (*TENANT_TABLES, "mofa_tenant_binding", "mofa_tenant_role")

#: what connecting with row_level_security=True checks: the role is subject to the policies (it neither is
#: nor can become a superuser, a BYPASSRLS role or an owner), holds no privilege that walks around them, and
#: the policies are the ones that read the binding
RLS_STATE_SQL = _q(
    "WITH t AS (SELECT c.oid, c.relname::text AS name, c.relrowsecurity, c.relforcerowsecurity, c.relowner"
    " FROM pg_class c WHERE c.oid = ANY (ARRAY[{tables}]::regclass[]))"
    " SELECT current_user::text AS role,"
    " ARRAY(SELECT r.rolname::text FROM pg_roles r WHERE (r.rolsuper OR r.rolbypassrls)"
    "   AND pg_has_role(current_user, r.oid, 'MEMBER') ORDER BY 1) AS privileged,"
    " ARRAY(SELECT name FROM t WHERE pg_has_role(current_user, relowner, 'MEMBER') AND NOT relforcerowsecurity"
    "   ORDER BY 1) AS owned,"
    " ARRAY(SELECT p || ' on ' || name FROM t, unnest(ARRAY[{risky}]) p"
    "   WHERE has_table_privilege(current_user, t.oid, p) ORDER BY name, p) AS risky,"
    " to_regprocedure('mofa_bind_tenant(uuid)') IS NOT NULL AND to_regprocedure('mofa_current_tenant()') IS NOT NULL"
    " AS functions,"
    " ARRAY(SELECT name FROM t WHERE name = ANY (ARRAY[{tenant_tables}]) AND (NOT relrowsecurity OR NOT EXISTS ("
    "   SELECT 1 FROM pg_policy p WHERE p.polrelid = t.oid AND p.polname = {policy}"
    "   AND pg_get_expr(p.polqual, p.polrelid) LIKE '%mofa_current_tenant()%')) ORDER BY 1) AS unsecured",
    tables=sql.SQL(", ").join(sql.SQL("to_regclass({})").format(sql.Literal(t)) for t in _RLS_TABLES),
    risky=sql.SQL(", ").join(sql.Literal(p) for p in RLS_RISKY_PRIVILEGES),
    tenant_tables=sql.SQL(", ").join(sql.Literal(t) for t in TENANT_TABLES),
    policy=sql.Literal(_POLICY),
)


def rls_setup_statements(schema: str) -> list[sql.Composed]:
    """The binding table, the role pins and the two functions, in ``schema`` (the tables' own)."""
    return [sql.SQL(stmt).format(schema=sql.Identifier(schema)) for stmt in _RLS_SETUP]


def rls_statements(table: str) -> list[sql.Composed]:
    """Enable RLS on ``table`` with the tenant policy (table names come from TENANT_TABLES only)."""
    t, policy = sql.Identifier(table), sql.Identifier(_POLICY)
    return [
        sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(t),
        sql.SQL("DROP POLICY IF EXISTS {} ON {}").format(policy, t),
        sql.SQL("CREATE POLICY {} ON {} USING ({}) WITH CHECK ({})").format(
            policy, t, sql.SQL(_TENANT_MATCH), sql.SQL(_TENANT_MATCH)
        ),
    ]
