"""The SQL of the PostgreSQL store, and the mapping between its rows and the entities.

Every statement is built here once, at import time, from constant fragments; values only ever travel as
parameters.
"""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime
from typing import Any, get_args

from psycopg import sql
from psycopg.types.json import Json
from pydantic import SecretStr

from ..entities import (
    Agent,
    ApiCallStatus,
    LLMApiCall,
    Message,
    MessageStatus,
    Provider,
    QueryFilter,
    Session,
)
from ._codec import decode_row, encode_row
from ._secrets import decrypt_key, encrypt_key

Row = dict[str, Any]

# -- SQL ---------------------------------------------------------------------------------------------
# Column lists with the type each parameter is cast to: INSERT ... SELECT needs the casts, because a
# None parameter has no type of its own there.
_MESSAGE_COLS = [
    ("id", "uuid"), ("session_id", "uuid"), ("tenant_id", "uuid"), ("user_id", "uuid"),
    ("agent_id", "uuid"), ("seq", "bigint"), ("role", "text"), ("content", "text"), ("status", "text"),
    ("metadata", "json"), ("nul_escaped", "boolean"), ("parent_message_id", "uuid"),
    ("create_time", "timestamptz"), ("update_time", "timestamptz"),
]  # fmt: skip
_SESSION_COLS = [
    ("id", "uuid"), ("tenant_id", "uuid"), ("user_id", "uuid"), ("agent_id", "uuid"), ("title", "text"),
    ("metadata", "json"), ("create_time", "timestamptz"), ("update_time", "timestamptz"),
]  # fmt: skip
_CALL_COLS = [
    ("id", "uuid"), ("tenant_id", "uuid"), ("session_id", "uuid"), ("user_id", "uuid"), ("agent_id", "uuid"),
    ("request_message_id", "uuid"), ("response_message_id", "uuid"), ("model_name", "text"),
    ("status", "text"), ("error_message", "text"), ("error_code", "text"), ("prompt_tokens", "integer"),
    ("completion_tokens", "integer"), ("total_tokens", "integer"), ("prompt_tokens_details", "json"),
    ("completion_tokens_details", "json"), ("tokens_estimated", "boolean"), ("price", "numeric"),
    ("price_details", "json"), ("latency_ms", "integer"), ("time_to_first_token_ms", "integer"),
    ("tokens_per_second", "double precision"), ("provider_response_id", "text"),
    ("create_time", "timestamptz"),
]  # fmt: skip
_PROVIDER_COLS = [
    ("id", "uuid"), ("tenant_id", "uuid"), ("provider_name", "text"), ("provider_type", "text"),
    ("api_base", "text"), ("api_key", "text"), ("enabled", "boolean"), ("create_time", "timestamptz"),
    ("update_time", "timestamptz"),
]  # fmt: skip
_AGENT_COLS = [
    ("id", "uuid"), ("tenant_id", "uuid"), ("agent_code", "text"), ("agent_name", "text"),
    ("agent_order", "integer"), ("agent_status", "boolean"), ("context_limit", "integer"),
    ("custom_params", "json"), ("max_completion_tokens", "integer"), ("model_name", "text"),
    ("provider_id", "uuid"), ("response_format", "json"), ("system_prompt", "text"),
    ("temperature", "double precision"), ("stream", "boolean"), ("thinking", "json"),
    ("create_time", "timestamptz"), ("update_time", "timestamptz"),
]  # fmt: skip
#: columns an update never changes
_FIXED = {"id", "tenant_id", "create_time"}


def _names(cols: list[tuple[str, str]]) -> sql.Composed:
    return sql.SQL(", ").join(sql.SQL(c) for c, _ in cols)


def _values(cols: list[tuple[str, str]], overrides: dict[str, str] | None = None) -> sql.Composed:
    overrides = overrides or {}
    return sql.SQL(", ").join(
        sql.SQL(overrides[c]) if c in overrides else sql.SQL("{}::{}").format(sql.Placeholder(c), sql.SQL(t))
        for c, t in cols
    )


def _sets(cols: list[tuple[str, str]]) -> sql.Composed:
    return sql.SQL(", ").join(
        sql.SQL("{} = {}::{}").format(sql.SQL(c), sql.Placeholder(c), sql.SQL(t))
        for c, t in cols
        if c not in _FIXED
    )


def _q(template: str, **parts: sql.Composable) -> str:
    """Build a statement from our own constant fragments once, at import time (no user value ever)."""
    return sql.SQL(template).format(**parts).as_string(None)


MSG = _names(_MESSAGE_COLS)
SESSION = _names(_SESSION_COLS)
CALL = _names(_CALL_COLS)
PROVIDER = _names(_PROVIDER_COLS)
AGENT = _names(_AGENT_COLS)

# The seq is handed out by the same statement that inserts the row: concurrent writers serialise on the
# session row and never collide; no session row for this tenant means nothing is inserted.
SAVE_MESSAGE_SQL = _q(
    "WITH s AS (UPDATE entity_session SET last_seq = last_seq + 1, update_time = %(now)s"
    " WHERE id = %(session_id)s AND tenant_id = %(tenant_id)s RETURNING last_seq)"
    " INSERT INTO entity_message ({cols}) SELECT {vals} FROM s RETURNING seq",
    cols=MSG,
    vals=_values(_MESSAGE_COLS, {"seq": "s.last_seq"}),
)
RESERVE_SEQS_SQL = (
    "UPDATE entity_session SET last_seq = last_seq + %(n)s, update_time = %(now)s"
    " WHERE id = %(session_id)s AND tenant_id = %(tenant_id)s RETURNING last_seq"
)
INSERT_MESSAGE_SQL = _q("INSERT INTO entity_message ({c}) VALUES ({v})", c=MSG, v=_values(_MESSAGE_COLS))
GET_MESSAGE_SQL = _q("SELECT {c} FROM entity_message WHERE id = %s AND tenant_id = %s", c=MSG)
# the expression is the one 0005 indexes (GIN), so the index answers the match
SEARCH_MESSAGES_SQL = _q(
    "SELECT {c} FROM entity_message m WHERE to_tsvector('simple'::regconfig, m.content)"
    " @@ plainto_tsquery('simple'::regconfig, %s) AND m.tenant_id = %s AND EXISTS (SELECT 1 FROM entity_session s"
    " WHERE s.id = m.session_id AND s.tenant_id = m.tenant_id AND s.user_id = %s)"
    " ORDER BY m.create_time DESC, m.id DESC LIMIT %s",
    c=MSG,
)
SESSION_MESSAGES_SQL = _q(
    "SELECT {c} FROM entity_message WHERE session_id = %s AND tenant_id = %s ORDER BY seq", c=MSG
)
SESSION_MESSAGES_PAGE_SQL = _q(
    "SELECT {c} FROM entity_message WHERE session_id = %s AND tenant_id = %s ORDER BY seq OFFSET %s LIMIT %s",
    c=MSG,
)
#: a backward range scan of entity_message_session_seq_key: cost independent of the session's length
LAST_MESSAGES_SQL = _q(
    "SELECT {c} FROM entity_message WHERE session_id = %s AND tenant_id = %s ORDER BY seq DESC LIMIT %s",
    c=MSG,
)
LOCK_MESSAGE_SQL = (
    "SELECT content, metadata, nul_escaped FROM entity_message WHERE id = %s AND tenant_id = %s FOR UPDATE"
)
REWRITE_MESSAGE_SQL = (
    "UPDATE entity_message SET content = %s, metadata = %s, nul_escaped = %s, status = coalesce(%s, status),"
    " update_time = %s"
    " WHERE id = %s AND tenant_id = %s"
)

INSERT_SESSION_SQL = _q(
    "INSERT INTO entity_session ({c}) VALUES ({v}) ON CONFLICT (id) DO NOTHING RETURNING {c}",
    c=SESSION,
    v=_values(_SESSION_COLS),
)
SESSION_BY_ID_SQL = _q("SELECT {c} FROM entity_session WHERE id = %s", c=SESSION)
GET_SESSION_SQL = _q("SELECT {c} FROM entity_session WHERE id = %s AND tenant_id = %s", c=SESSION)
SESSIONS_BY_ID_FRAGMENT_SQL = _q(
    "SELECT {c} FROM entity_session WHERE tenant_id = %s AND user_id = %s "
    "AND (id::text LIKE %s OR id::text LIKE %s) ORDER BY update_time DESC, id DESC LIMIT %s",
    c=SESSION,
)
USER_SESSIONS_SQL = _q(
    "SELECT {c} FROM entity_session WHERE tenant_id = %s AND user_id = %s"
    " ORDER BY update_time DESC, id DESC OFFSET %s LIMIT %s",
    c=SESSION,
)

INSERT_CALL_SQL = _q(
    "INSERT INTO entity_api_call ({c}) SELECT {v} WHERE EXISTS"
    " (SELECT 1 FROM entity_session WHERE id = %(session_id)s AND tenant_id = %(tenant_id)s)",
    c=CALL,
    v=_values(_CALL_COLS),
)
GET_CALL_SQL = _q("SELECT {c} FROM entity_api_call WHERE id = %s AND tenant_id = %s", c=CALL)

INSERT_PROVIDER_SQL = _q(
    "INSERT INTO entity_provider ({c}) VALUES ({v})", c=PROVIDER, v=_values(_PROVIDER_COLS)
)
UPDATE_PROVIDER_SQL = _q(
    "UPDATE entity_provider SET {s} WHERE id = %(id)s AND tenant_id = %(tenant_id)s RETURNING create_time",
    s=_sets(_PROVIDER_COLS),
)
GET_PROVIDER_SQL = _q("SELECT {c} FROM entity_provider WHERE id = %s AND tenant_id = %s", c=PROVIDER)
PROVIDER_BY_NAME_SQL = _q(
    "SELECT {c} FROM entity_provider WHERE tenant_id = %s AND provider_name = %s", c=PROVIDER
)
LIST_PROVIDERS_SQL = _q(
    "SELECT {c} FROM entity_provider WHERE tenant_id = %s ORDER BY provider_name, id", c=PROVIDER
)
ENABLED_PROVIDERS_SQL = _q(
    "SELECT {c} FROM entity_provider WHERE tenant_id = %s AND enabled ORDER BY provider_name, id", c=PROVIDER
)

# An agent may only point at a provider of its own tenant (the foreign key alone would allow any).
_PROVIDER_IN_TENANT = (
    "EXISTS (SELECT 1 FROM entity_provider WHERE id = %(provider_id)s AND tenant_id = %(tenant_id)s)"
)
INSERT_AGENT_SQL = _q(
    "INSERT INTO entity_agent ({c}) SELECT {v} WHERE {guard}",
    c=AGENT,
    v=_values(_AGENT_COLS),
    guard=sql.SQL(_PROVIDER_IN_TENANT),
)
UPDATE_AGENT_SQL = _q(
    "UPDATE entity_agent SET {s} WHERE id = %(id)s AND tenant_id = %(tenant_id)s AND {guard}"
    " RETURNING create_time",
    s=_sets(_AGENT_COLS),
    guard=sql.SQL(_PROVIDER_IN_TENANT),
)
GET_AGENT_SQL = _q("SELECT {c} FROM entity_agent WHERE id = %s AND tenant_id = %s", c=AGENT)
AGENT_BY_CODE_SQL = _q("SELECT {c} FROM entity_agent WHERE tenant_id = %s AND agent_code = %s", c=AGENT)
LIST_AGENTS_SQL = _q(
    "SELECT {c} FROM entity_agent WHERE tenant_id = %s ORDER BY agent_order, agent_code", c=AGENT
)
ACTIVE_AGENTS_SQL = _q(
    "SELECT {c} FROM entity_agent WHERE tenant_id = %s AND agent_status ORDER BY agent_order, agent_code",
    c=AGENT,
)

#: the current schema's (table, column) pairs and index names, for the schema check
SCHEMA_COLUMNS_SQL = (
    "SELECT table_name::text, column_name::text FROM information_schema.columns"
    " WHERE table_schema = current_schema()"
)
SCHEMA_INDEXES_SQL = "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema()"

CALL_STATUSES: tuple[str, ...] = get_args(ApiCallStatus)
MESSAGE_STATUSES: tuple[str, ...] = get_args(MessageStatus)
STATISTICS_SELECT = _q(
    "SELECT count(*) AS total_calls, {by_status},"
    " coalesce(sum(prompt_tokens), 0) AS prompt_tokens,"
    " coalesce(sum(completion_tokens), 0) AS completion_tokens,"
    " coalesce(sum(total_tokens), 0) AS total_tokens,"
    " coalesce(sum(price), 0)::float8 AS total_price,"
    " avg(latency_ms)::float8 AS avg_latency_ms,"
    " percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50_latency_ms,"
    " percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95_latency_ms,"
    " percentile_cont(0.5) WITHIN GROUP (ORDER BY time_to_first_token_ms) AS p50_time_to_first_token_ms,"
    " percentile_cont(0.95) WITHIN GROUP (ORDER BY time_to_first_token_ms) AS p95_time_to_first_token_ms,"
    " avg(tokens_per_second)::float8 AS avg_tokens_per_second"
    " FROM entity_api_call WHERE ",
    by_status=sql.SQL(", ").join(
        sql.SQL("count(*) FILTER (WHERE status = {}) AS {}").format(sql.Literal(s), sql.Identifier(f"n_{s}"))
        for s in CALL_STATUSES
    ),
)
QUERY_CALLS_SELECT = _q("SELECT {c} FROM entity_api_call WHERE ", c=CALL)

# Two-key advisory lock: a constant class ("mofa" in ASCII) and the schema, so migrations of different
# schemas in one database do not wait for each other.
_LOCK_KEY = "1836017249, hashtext(coalesce(current_schema(), ''))"
LOCK_SQL = "SELECT pg_advisory_lock(" + _LOCK_KEY + ")"
UNLOCK_SQL = "SELECT pg_advisory_unlock(" + _LOCK_KEY + ")"
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


def utc(value: datetime) -> datetime:
    """Read: the session's time zone may be anything; hand back UTC."""
    return value.astimezone(UTC)


def ts(value: datetime) -> datetime:
    """Write: a naive time is taken as UTC (the app clock is UTC), never as the server's local time."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


#: JSON as Python writes it, UTF-8 left as it is
_dumps = functools.partial(json.dumps, ensure_ascii=False, allow_nan=False)


def json_param(value: Any) -> Json | None:
    """A JSON parameter. The columns are ``json`` (migration 0006), which keep the text as written, so
    every number reads back as it went in: jsonb would turn 1e20 into an int, -0.0 into 0.0 and 1.5e300
    into a different integer, and reorder keys."""
    return None if value is None else Json(value, dumps=_dumps)


# -- rows ------------------------------------------------------------------------------------------


def message_from_row(r: Row) -> Message:
    content, metadata = decode_row(r["content"], r["metadata"], r["nul_escaped"])
    return Message(
        id=r["id"],
        session_id=r["session_id"],
        tenant_id=r["tenant_id"],
        user_id=r["user_id"],
        agent_id=r["agent_id"],
        seq=r["seq"],
        role=r["role"],
        content=content,
        status=r["status"],
        metadata=metadata,
        parent_message_id=r["parent_message_id"],
        create_time=utc(r["create_time"]),
        update_time=utc(r["update_time"]),
    )


def message_params(m: Message) -> dict[str, Any]:
    content, metadata, escaped = encode_row(m.content, m.metadata)
    return {
        "id": m.id,
        "session_id": m.session_id,
        "tenant_id": m.tenant_id,
        "user_id": m.user_id,
        "agent_id": m.agent_id,
        "seq": m.seq,
        "role": m.role,
        "content": content,
        "status": m.status,
        "metadata": json_param(metadata),
        "nul_escaped": escaped,
        "parent_message_id": m.parent_message_id,
        "create_time": ts(m.create_time),
        "update_time": ts(m.update_time),
    }


def session_from_row(r: Row) -> Session:
    return Session(
        id=r["id"],
        tenant_id=r["tenant_id"],
        user_id=r["user_id"],
        agent_id=r["agent_id"],
        title=r["title"],
        metadata=r["metadata"],
        create_time=utc(r["create_time"]),
        update_time=utc(r["update_time"]),
    )


def call_from_row(r: Row) -> LLMApiCall:
    fields = {c: r[c] for c, _ in _CALL_COLS}
    fields["create_time"] = utc(r["create_time"])
    fields["price"] = None if r["price"] is None else float(r["price"])
    return LLMApiCall(**fields)


def call_params(c: LLMApiCall) -> dict[str, Any]:
    params = {name: getattr(c, name) for name, _ in _CALL_COLS}
    for name in ("prompt_tokens_details", "completion_tokens_details", "price_details"):
        params[name] = json_param(params[name])
    params["create_time"] = ts(c.create_time)
    return params


def where_of(q: QueryFilter) -> tuple[sql.Composed, dict[str, Any]]:
    conds: list[sql.Composable] = [sql.SQL("tenant_id = %(tenant_id)s")]
    params: dict[str, Any] = {"tenant_id": q.tenant_id}
    for name in ("user_id", "session_id", "agent_id", "status", "model_name"):
        value = getattr(q, name)
        if value is not None:
            conds.append(sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name)))
            params[name] = value
    if q.start_time is not None:
        conds.append(sql.SQL("create_time >= %(start_time)s"))
        params["start_time"] = ts(q.start_time)
    if q.end_time is not None:
        conds.append(sql.SQL("create_time < %(end_time)s"))
        params["end_time"] = ts(q.end_time)
    return sql.SQL(" AND ").join(conds), params


def provider_from_row(r: Row) -> Provider:
    key = decrypt_key(r["api_key"], provider=r["provider_name"])
    return Provider(
        id=r["id"],
        tenant_id=r["tenant_id"],
        provider_name=r["provider_name"],
        provider_type=r["provider_type"],
        api_base=r["api_base"],
        api_key=None if key is None else SecretStr(key),
        enabled=r["enabled"],
        create_time=utc(r["create_time"]),
        update_time=utc(r["update_time"]),
    )


def provider_params(p: Provider) -> dict[str, Any]:
    return {
        "id": p.id,
        "tenant_id": p.tenant_id,
        "provider_name": p.provider_name,
        "provider_type": p.provider_type,
        "api_base": p.api_base,
        "api_key": encrypt_key(None if p.api_key is None else p.api_key.get_secret_value()),
        "enabled": p.enabled,
        "create_time": ts(p.create_time),
        "update_time": ts(p.update_time),
    }


def agent_from_row(r: Row) -> Agent:
    fields = {c: r[c] for c, _ in _AGENT_COLS}
    fields["create_time"] = utc(r["create_time"])
    fields["update_time"] = utc(r["update_time"])
    return Agent(**fields)


def agent_params(a: Agent) -> dict[str, Any]:
    params = {name: getattr(a, name) for name, _ in _AGENT_COLS}
    for name in ("custom_params", "response_format", "thinking"):
        params[name] = json_param(params[name])
    params["create_time"] = ts(a.create_time)
    params["update_time"] = ts(a.update_time)
    return params
