"""PostgreSQL store: psycopg 3 on an ``AsyncConnectionPool``, every query parameterised and tenant-scoped."""

from __future__ import annotations

import asyncio
import functools
import math
import os
import select
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

import psycopg
from psycopg import errors as pgerr
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from .._redact import is_secret_name, redact_text, redact_url, scrub_chain, url_secrets
from ..entities import (
    Agent,
    ApiKey,
    LLMApiCall,
    Message,
    MessageStatus,
    Provider,
    QueryFilter,
    Session,
    UsageStatistics,
    check_json,
    check_text,
)
from ..errors import (
    ConfigError,
    ConflictError,
    DatabaseUnavailableError,
    MofaError,
    NotFoundError,
    PersistenceError,
    TenantMismatchError,
    ValidationError,
)
from ..ids import parse_uuid, utc_now
from . import _postgres_sql as q
from ._codec import _escape, _map_strings, decode_row, encode_row, has_nul
from ._migrations import POSTGRES_MIGRATIONS_DDL, load_migrations, schema_problems, shape_of
from ._postgres_sql import Row
from ._store import (
    UNSET,
    Store,
    Unset,
    check_id_fragment,
    check_page,
    no_schema_diagnosis,
    schema_fallback,
    search_words,
    settle_status,
)

__all__ = ["PostgresStore"]

Conn = psycopg.AsyncConnection[Any]


def _uid(value: object, what: str) -> uuid.UUID:
    return parse_uuid(value, what)


def _check_tx(tx: Any) -> Conn:
    if isinstance(tx, psycopg.AsyncConnection):
        return tx
    raise ConfigError(
        "tx must be what PostgresStore.transaction() yields or a psycopg AsyncConnection, "
        f"got {type(tx).__name__}"
    )


@asynccontextmanager
async def _atomic(conn: Conn) -> AsyncIterator[None]:
    """Group statements: a savepoint inside a transaction, BEGIN/COMMIT on an autocommit connection.
    A caller's non-autocommit connection with no transaction yet is left alone: its first statement opens
    the caller's own transaction, which the caller commits or rolls back (``transaction()`` would commit)."""
    if conn.autocommit or conn.info.transaction_status == TransactionStatus.INTRANS:
        async with conn.transaction():
            yield
    else:
        yield


class _Target:
    """Where a URL points, for messages that must never show a secret of it."""

    def __init__(self, url: str) -> None:
        if not isinstance(url, str) or not url.strip():
            raise ConfigError("the PostgreSQL URL is empty")
        url = url.strip()
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        # taken by shape, so that even a URL no parser accepts cannot echo its password
        self.secrets = url_secrets(url)
        if scheme not in ("postgres", "postgresql"):
            raise ConfigError(f"not a PostgreSQL URL (expected postgresql://…): {redact_url(url)!r}")
        problem: str | None = None
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error as exc:
            problem = self.clean(str(exc))
        if problem is not None:  # raised outside the except: psycopg's text must not ride along as context
            raise ConfigError(f"malformed PostgreSQL URL {redact_url(url)!r}: {problem}")
        self.secrets += tuple(str(v) for k, v in params.items() if v and is_secret_name(k))
        self.url = url
        self.host = str(params.get("host") or "localhost")
        self.port = str(params.get("port") or "5432")
        # libpq only notices a bad port when it tries to connect, and then blames the host. The port is not
        # echoed: in "u:pa/ss@h" libpq reads "pa" as the port; the redacted URL shows a real one anyway
        if not all(p.strip().isdigit() and 0 < int(p) < 65536 for p in self.port.split(",")):
            raise ConfigError(
                f"malformed PostgreSQL URL {redact_url(url)!r}: the port is not a number from 1 to 65535"
            )
        self.dbname = str(params.get("dbname") or params.get("user") or "postgres")

    def __str__(self) -> str:
        return f"host={self.host} port={self.port} database={self.dbname}"

    def clean(self, text: str) -> str:
        return redact_text(text, self.secrets)


_F = TypeVar("_F", bound=Callable[..., Awaitable[Any]])


def _scrubbed(fn: _F) -> _F:
    """For methods that open connections: psycopg's connection errors hold the password (``exc.pgconn``
    keeps the whole conninfo), so what ``fn`` raises keeps only their classes and redacted messages."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except MofaError as err:
            target = getattr(args[0], "_target", None) if args else None  # migrate(self)
            url = kwargs.get("url", args[1] if len(args) > 1 else None)  # connect_with_options(cls, url)
            if isinstance(target, _Target):
                scrub_chain(err, target.secrets)
            else:
                scrub_chain(err, url_secrets(url) if isinstance(url, str) else ())
            raise  # a bare raise keeps the scrubbed chain as it is

    return cast("_F", wrapper)


# -- the store ---------------------------------------------------------------------------------------
_shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, PostgresStore]] = (
    weakref.WeakKeyDictionary()
)
_shared_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


async def _check_connection(conn: Conn) -> None:
    """Hand out only live connections, without a round trip in the common case: an idle connection's
    socket has nothing to read unless the server said goodbye (a restart or shutdown sends a FATAL
    and closes it) or sent a notice; only then is the full check (one round trip) run."""
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        readable = [True]
    if readable:
        await AsyncConnectionPool.check_connection(conn)


class PostgresStore(Store):
    """The PostgreSQL store. Make one with :meth:`connect`, :meth:`shared` or :meth:`from_env`."""

    dialect = "postgres"

    def __init__(
        self,
        pool: AsyncConnectionPool[Conn],
        target: _Target,
        *,
        connect_timeout: float,
        streaming_lease_seconds: float,
        row_level_security: bool = False,
    ) -> None:
        self._pool = pool
        self._row_level_security = row_level_security
        self._target = target
        self._connect_timeout = connect_timeout
        self.streaming_lease_seconds = streaming_lease_seconds
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<PostgresStore {self._target} {state}>"

    # -- lifecycle ---------------------------------------------------------------------------------
    @classmethod
    async def connect(cls, url: str, *, migrate: bool = True, **options: Any) -> PostgresStore:
        """Open a pool on ``url`` (``postgresql://`` or ``postgres://``), migrating the schema if asked.
        ``options`` are those of :meth:`connect_with_options` (what ``connect_store(url, **options)`` passes)."""
        return await cls.connect_with_options(url, migrate=migrate, **options)

    @classmethod
    @_scrubbed
    async def connect_with_options(
        cls,
        url: str,
        *,
        max_connections: int = 10,
        min_connections: int = 1,
        connect_timeout: float = 10.0,
        prepare_threshold: int | None = 5,
        streaming_lease_seconds: float = 5.0,
        migrate: bool = True,
        row_level_security: bool = False,
    ) -> PostgresStore:
        """Open a pool of ``min_connections`` to ``max_connections`` on ``url``.

        ``prepare_threshold=None`` turns server-side prepared statements off: needed behind a
        transaction pooler such as PgBouncer (``pool_mode = transaction``), where the next transaction
        may run on a server connection that never saw the statement.
        ``row_level_security=True`` runs every operation in a transaction bound to its tenant
        (``mofa_bind_tenant``), for a database where :meth:`enable_row_level_security` was run and the
        application connects as a role the policies apply to (not the owner, no superuser, no BYPASSRLS);
        connecting checks both and raises ConfigError otherwise.
        ``connect_timeout`` bounds connecting (a clear DatabaseUnavailableError, never a hang) and
        waiting for a pooled connection.
        """
        target = _Target(url)
        if not isinstance(max_connections, int) or max_connections < 1:
            raise ConfigError(f"max_connections must be an integer >= 1, got {max_connections!r}")
        if not isinstance(min_connections, int) or not 0 <= min_connections <= max_connections:
            raise ConfigError(f"min_connections must be from 0 to max_connections, got {min_connections!r}")
        if not isinstance(connect_timeout, int | float) or not connect_timeout > 0:
            raise ConfigError(f"connect_timeout must be a number of seconds > 0, got {connect_timeout!r}")
        if prepare_threshold is not None and (
            not isinstance(prepare_threshold, int) or prepare_threshold < 0
        ):
            raise ConfigError(f"prepare_threshold must be None or an integer >= 0, got {prepare_threshold!r}")
        if not isinstance(streaming_lease_seconds, int | float) or streaming_lease_seconds <= 0:
            raise ConfigError(f"streaming_lease_seconds must be > 0, got {streaming_lease_seconds!r}")
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "prepare_threshold": prepare_threshold,
            # libpq counts whole seconds (and at least 2); the asyncio timeout below is the exact bound
            "connect_timeout": max(2, math.ceil(connect_timeout)),
        }
        # One direct connection first: the pool would only report "timed out", the server says why.
        try:
            probe = await asyncio.wait_for(psycopg.AsyncConnection.connect(url, **kwargs), connect_timeout)
        except TimeoutError:
            raise DatabaseUnavailableError(
                f"cannot connect to PostgreSQL at {target}: no answer within {connect_timeout:g}s"
            ) from None
        except psycopg.ProgrammingError as exc:
            raise ConfigError(
                f"bad PostgreSQL connection settings for {target}: {target.clean(str(exc))}"
            ) from None
        except psycopg.Error as exc:
            detail = target.clean(str(exc)).strip()
            if exc.sqlstate in ("28P01", "28000") or "password authentication failed" in detail or (
                "no password supplied" in detail
            ):
                # retrying will not help: this is the URL's user or password, not the server's health
                raise ConfigError(
                    f"PostgreSQL at {target} refused the login (check the user and password): {detail}"
                ) from None
            raise DatabaseUnavailableError(f"cannot connect to PostgreSQL at {target}: {detail}") from exc
        await probe.close()
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            url,
            min_size=min_connections,
            max_size=max_connections,
            kwargs=kwargs,
            timeout=connect_timeout,
            open=False,
            name=f"mofa {target.host}:{target.port}/{target.dbname}",
            # a connection killed by a server restart is noticed (and replaced) when it is handed out,
            # not by the next statement
            check=_check_connection,
        )
        try:
            await pool.open(wait=min_connections > 0, timeout=connect_timeout)
        except PoolTimeout:
            await pool.close()
            raise DatabaseUnavailableError(
                f"cannot open a connection pool to PostgreSQL at {target} within {connect_timeout:g}s"
            ) from None
        store = cls(
            pool,
            target,
            connect_timeout=connect_timeout,
            streaming_lease_seconds=streaming_lease_seconds,
            row_level_security=bool(row_level_security),
        )
        try:
            if migrate:
                await store._migrate_if_needed()
            if store._row_level_security:
                await store._check_row_level_security()
        except BaseException:
            await store.close()
            raise
        return store

    @classmethod
    async def shared(cls, url: str) -> PostgresStore:
        """One store (one pool) per URL per process and event loop; a closed one is replaced."""
        loop = asyncio.get_running_loop()
        lock = _shared_locks.setdefault(loop, asyncio.Lock())
        async with lock:
            stores = _shared.setdefault(loop, {})
            store = stores.get(url)
            if store is None or store.closed:
                store = await cls.connect(url)
                stores[url] = store
            return store

    @classmethod
    async def from_env(cls, *, migrate: bool = True) -> PostgresStore:
        """Connect to ``DATABASE_URL``."""
        url = os.environ.get("DATABASE_URL", "").strip()
        if not url:
            raise ConfigError("DATABASE_URL is not set; set it to a postgresql://user:password@host/db URL")
        return await cls.connect(url, migrate=migrate)

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._pool.close()

    def pool_stats(self) -> dict[str, int]:
        """The pool's counters (``pool_size``, ``pool_available``, ``requests_waiting`` …)."""
        return self._pool.get_stats()

    # -- errors and connections ----------------------------------------------------------------------
    def _wrap(self, exc: psycopg.Error, doing: str) -> MofaError:
        detail = self._target.clean(str(exc).strip()) or type(exc).__name__
        if isinstance(exc, PoolClosed):
            return PersistenceError(f"{doing}: the store is closed")
        if isinstance(exc, PoolTimeout):
            return DatabaseUnavailableError(
                f"{doing}: no connection to PostgreSQL at {self._target} within {self._connect_timeout:g}s"
            )
        if exc.sqlstate == q.TENANT_REFUSED_SQLSTATE:
            # the primary message only: the rest is the PL/pgSQL context of the refusal
            return TenantMismatchError(f"{doing}: {exc.diag.message_primary or detail}")
        if isinstance(exc, pgerr.UndefinedFunction) and "mofa_bind_tenant" in detail:
            return PersistenceError(
                f"{doing}: row-level security is not set up (or was set up by an older mofa-sdk) in "
                f"{self._target}; run `mofa db enable-rls` as the table owner"
            )
        if isinstance(exc, pgerr.UndefinedTable | pgerr.UndefinedColumn):
            return schema_fallback(f"{doing} in {self._target}", detail)
        if isinstance(exc, pgerr.UniqueViolation | pgerr.ForeignKeyViolation | pgerr.ExclusionViolation):
            return ConflictError(f"{doing}: {detail}")
        if isinstance(exc, pgerr.SerializationFailure | pgerr.DeadlockDetected | pgerr.LockNotAvailable):
            return ConflictError(f"{doing}: a concurrent change got in the way ({detail})")
        if isinstance(exc, pgerr.IntegrityError | psycopg.DataError):
            return ValidationError(f"{doing}: the database refused the value ({detail})")
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return DatabaseUnavailableError(
                f"{doing}: PostgreSQL at {self._target} is unavailable ({detail})"
            )
        return PersistenceError(f"{doing}: {detail}")

    @asynccontextmanager
    async def _conn(
        self, tx: Any, doing: str, *, atomic: bool = False, tenant: uuid.UUID | None = None
    ) -> AsyncIterator[Conn]:
        """A connection for one operation: ``tx`` when given, else one from the pool (autocommit).
        Every driver error raised inside becomes a mofa error saying what was being done.
        With row-level security on, the operation runs in a transaction first bound to ``tenant``; the
        binding ends with the transaction, so it never leaks to the next borrower of the connection."""
        scoped = self._row_level_security and tenant is not None
        try:
            if tx is not None:
                conn = _check_tx(tx)
                if atomic or scoped:
                    async with _atomic(conn):
                        if scoped:
                            await conn.execute(q.BIND_TENANT_SQL, (tenant,))
                        yield conn
                else:
                    yield conn
            else:
                async with self._pool.connection() as conn:
                    if atomic or scoped:
                        async with conn.transaction():
                            if scoped:
                                await conn.execute(q.BIND_TENANT_SQL, (tenant,))
                            yield conn
                    else:
                        yield conn
        except (pgerr.UndefinedTable, pgerr.UndefinedColumn) as exc:
            # out of the pool's hands by now: the diagnosis borrows connections of its own
            detail = self._target.clean(str(exc).strip())
            raise await self.schema_error(f"{doing} in {self._target}", detail) from exc
        except psycopg.Error as exc:
            raise self._wrap(exc, doing) from exc

    async def _rows(
        self, query: str, params: Any, doing: str, tx: Any = None, *, tenant: uuid.UUID | None = None
    ) -> list[Row]:
        async with self._conn(tx, doing, tenant=tenant) as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, params)
            return await cur.fetchall()

    async def _row(
        self, query: str, params: Any, doing: str, tx: Any = None, *, tenant: uuid.UUID | None = None
    ) -> Row | None:
        rows = await self._rows(query, params, doing, tx, tenant=tenant)
        return rows[0] if rows else None

    async def _count(
        self, query: str, params: Any, doing: str, tx: Any = None, *, tenant: uuid.UUID | None = None
    ) -> int:
        async with self._conn(tx, doing, tenant=tenant) as conn, conn.cursor() as cur:
            await cur.execute(query, params)
            return max(cur.rowcount, 0)

    # -- schema --------------------------------------------------------------------------------------
    async def _applied(self) -> dict[str, datetime]:
        try:
            with no_schema_diagnosis():  # no table yet is the normal answer of a blank schema
                rows = await self._rows(
                    "SELECT name, applied_at FROM mofa_migrations", None, "reading migrations"
                )
        except PersistenceError as exc:
            if isinstance(exc.__cause__, pgerr.UndefinedTable):
                return {}
            raise
        return {r["name"]: q.utc(r["applied_at"]) for r in rows}

    async def _migrate_if_needed(self) -> list[str]:
        applied = await self._applied()
        if all(m.name in applied for m in load_migrations("postgres")):
            return []
        return await self.migrate()

    @_scrubbed
    async def migrate(self) -> list[str]:
        """Apply pending migrations, each in its own transaction under an advisory lock."""
        done: list[str] = []
        doing = f"migrating the schema of {self._target}"
        try:
            # A connection of its own, closed at the end: the session-level lock can never stay behind
            # on a pooled connection, whatever happens (cancellation included).
            conn = await asyncio.wait_for(
                psycopg.AsyncConnection.connect(
                    self._target.url,
                    autocommit=True,
                    prepare_threshold=None,
                    connect_timeout=max(2, math.ceil(self._connect_timeout)),
                ),
                self._connect_timeout,
            )
        except TimeoutError:
            raise DatabaseUnavailableError(
                f"{doing}: no connection within {self._connect_timeout:g}s"
            ) from None
        except psycopg.Error as exc:
            raise self._wrap(exc, doing) from None
        try:
            async with conn:
                for m in load_migrations("postgres"):
                    doing = f"applying migration {m.name} to {self._target}"
                    # A transaction-level lock, taken again for each migration: COMMIT or ROLLBACK always
                    # releases it, also behind a transaction pooler (PgBouncer), where a session-level
                    # lock and its unlock may run on two different server connections.
                    async with conn.transaction():
                        await conn.execute(q.XACT_LOCK_SQL)
                        await conn.execute(POSTGRES_MIGRATIONS_DDL)
                        cur = await conn.execute("SELECT 1 FROM mofa_migrations WHERE name = %s", (m.name,))
                        if await cur.fetchone() is not None:
                            continue
                        await conn.execute(m.sql.encode())  # several statements: simple query protocol
                        await conn.execute("INSERT INTO mofa_migrations (name) VALUES (%s)", (m.name,))
                    done.append(m.name)
        except psycopg.Error as exc:
            raise self._wrap(exc, doing) from exc
        return done

    async def enable_row_level_security(self, pins: Mapping[str, uuid.UUID] | None = None) -> list[str]:
        """Turn on PostgreSQL row-level security on every tenant-scoped table (idempotent; opt-in).

        A policy on each table lets a role that is not the table owner see and write only the rows of the
        tenant its transaction is bound to by ``mofa_bind_tenant(tenant)`` (none bound: nothing). A
        transaction is bound once; rebinding it to another tenant is refused. ``pins`` maps login roles
        to the one tenant each may ever bind (per-tenant credentials). Run it as the owner (the role that
        migrated); connect the application with another role and ``row_level_security=True``. Returns
        the tables it secured."""
        pinned: dict[str, uuid.UUID] = {}
        for role, tenant in (pins or {}).items():
            if not isinstance(role, str) or not role:
                raise ConfigError(f"a pinned role must be a role name, got {role!r}")
            pinned[role] = _uid(tenant, f"the tenant of role {role!r}")
        doing = f"enabling row-level security in {self._target}"
        async with self._conn(None, doing, atomic=True) as conn:
            cur = await conn.execute("SELECT current_schema()")
            schema = (await cur.fetchone() or [None])[0]
            if schema is None:
                raise ConfigError(f"{doing}: no schema in the search_path; migrate first")
            for stmt in q.rls_setup_statements(schema):
                await conn.execute(stmt)
            for table in q.TENANT_TABLES:
                for stmt in q.rls_statements(table):
                    await conn.execute(stmt)
            for role, tenant in pinned.items():
                cur = await conn.execute(q.ROLE_CAN_LOGIN_SQL, (role,))
                found = await cur.fetchone()
                if found is None:
                    raise ConfigError(f"{doing}: there is no role {role!r} to pin to tenant {tenant}")
                if not found[0]:
                    # the pin is matched against session_user, which is always a login role
                    raise ConfigError(f"{doing}: role {role!r} cannot log in; pin the login role itself")
                await conn.execute(q.PIN_ROLE_SQL, (role, tenant))
        return list(q.TENANT_TABLES)

    async def _check_row_level_security(self) -> None:
        """Refuse ``row_level_security=True`` where it would not hold: a role the policies do not apply
        to, a role holding a privilege that walks around them, or a schema whose policies are missing or
        are not the ones that read the binding."""
        row = await self._row(q.RLS_STATE_SQL, None, "checking row-level security")
        assert row is not None  # a query without FROM returns one row
        role = row["role"]
        bypass = []
        if row["privileged"]:
            bypass.append(f"it is or can become the superuser or BYPASSRLS role {', '.join(row['privileged'])}")
        if row["owned"]:
            bypass.append(f"it owns, or can become the owner of, {', '.join(row['owned'])}")
        if bypass:
            raise ConfigError(
                f"row_level_security=True, but role {role!r} is not subject to row-level security in "
                f"{self._target} ({'; '.join(bypass)}): nothing would be enforced. Connect the application "
                "as a role that owns none of the tables and is no member of a superuser or BYPASSRLS role"
            )
        if row["risky"]:
            raise ConfigError(
                f"row_level_security=True, but role {role!r} holds privileges that row-level security does "
                f"not stop ({', '.join(row['risky'])}): TRUNCATE empties every tenant's rows, TRIGGER runs "
                "its code as whoever writes, REFERENCES lets its own foreign keys probe every tenant's ids. "
                f"Revoke them (REVOKE {', '.join(q.RLS_RISKY_PRIVILEGES)} ON … FROM {role})"
            )
        if not row["functions"] or row["unsecured"]:
            missing = ", ".join(row["unsecured"]) or "the tenant binding"
            raise ConfigError(
                f"row_level_security=True, but row-level security is not set up in {self._target} "
                f"(missing or out of date: {missing}); run `mofa db enable-rls` as the table owner"
            )

    async def migration_status(self) -> list[tuple[str, datetime | None]]:
        applied = await self._applied()
        return [(m.name, applied.get(m.name)) for m in load_migrations("postgres")]

    async def check_schema(self) -> list[str]:
        columns = await self._rows(q.SCHEMA_COLUMNS_SQL, None, "checking the schema")
        indexes = await self._rows(q.SCHEMA_INDEXES_SQL, None, "checking the schema")
        return schema_problems(
            shape_of([(r["table_name"], r["column_name"]) for r in columns], [r["indexname"] for r in indexes])
        )

    def transaction(self) -> AbstractAsyncContextManager[Conn]:
        """``async with store.transaction() as tx:`` yields a psycopg AsyncConnection in a transaction."""
        return self._conn(None, "running a transaction", atomic=True)

    # -- messages ------------------------------------------------------------------------------------
    def _message(self, r: Row) -> Message:
        return settle_status(q.message_from_row(r), self.streaming_lease_seconds)

    async def save_message(self, message: Message, *, tx: Any = None) -> Message:
        params = q.message_params(message) | {"now": utc_now()}
        doing = f"saving message {message.id} in session {message.session_id}"
        async with self._conn(tx, doing, tenant=message.tenant_id) as conn, conn.cursor() as cur:
            await cur.execute(q.SAVE_MESSAGE_SQL, params)
            row = await cur.fetchone()
        if row is None:
            raise NotFoundError(
                f"{doing}: session {message.session_id} not found for tenant {message.tenant_id}"
            )
        return settle_status(
            message.model_copy(update={"seq": row[0]}), self.streaming_lease_seconds
        )

    async def save_messages(self, messages: Sequence[Message], *, tx: Any = None) -> list[Message]:
        if not messages:
            return []
        groups: dict[tuple[uuid.UUID, uuid.UUID], list[int]] = {}
        for i, m in enumerate(messages):
            groups.setdefault((m.tenant_id, m.session_id), []).append(i)
        seqs: list[int] = [0] * len(messages)
        now = utc_now()
        doing = f"saving {len(messages)} messages"
        async with self._conn(tx, doing, atomic=True, tenant=messages[0].tenant_id) as conn, conn.cursor() as cur:
            for (tenant_id, session_id), idx in groups.items():
                # one UPDATE reserves the whole block of seqs for this session
                await cur.execute(
                    q.RESERVE_SEQS_SQL,
                    {"n": len(idx), "now": now, "session_id": session_id, "tenant_id": tenant_id},
                )
                row = await cur.fetchone()
                if row is None:
                    raise NotFoundError(f"{doing}: session {session_id} not found for tenant {tenant_id}")
                first = row[0] - len(idx) + 1
                for k, i in enumerate(idx):
                    seqs[i] = first + k
            saved = [m.model_copy(update={"seq": s}) for m, s in zip(messages, seqs, strict=True)]
            await cur.executemany(q.INSERT_MESSAGE_SQL, [q.message_params(m) for m in saved])
        return [settle_status(m, self.streaming_lease_seconds) for m in saved]

    async def update_message(
        self,
        tenant_id: uuid.UUID,
        message_id: uuid.UUID,
        *,
        content: str | Unset = UNSET,
        status: MessageStatus | Unset = UNSET,
        metadata: dict[str, Any] | Unset = UNSET,
        tx: Any = None,
    ) -> None:
        tid, mid = _uid(tenant_id, "tenant_id"), _uid(message_id, "message_id")
        if not isinstance(content, Unset):
            if not isinstance(content, str):
                raise ValidationError(f"content must be a str, got {type(content).__name__}")
            check_text(content, "content")
        if not isinstance(status, Unset) and status not in q.MESSAGE_STATUSES:
            raise ValidationError(
                f"unknown message status {status!r}; expected one of {', '.join(q.MESSAGE_STATUSES)}"
            )
        if not isinstance(metadata, Unset):
            if not isinstance(metadata, dict):
                raise ValidationError(f"metadata must be a dict, got {type(metadata).__name__}")
            metadata = check_json(metadata, "metadata")
        doing = f"updating message {mid}"
        now = utc_now()
        if (isinstance(content, str) and "\x00" in content) or (
            isinstance(metadata, dict) and has_nul(metadata)
        ):
            await self._rewrite_message(tid, mid, content, status, metadata, now, doing, tx)
            return
        # Fast path (streaming checkpoints): one statement. A row already stored escaped stays escaped,
        # so the new value is written in whichever form matches the row's nul_escaped flag.
        sets: list[sql.Composable] = [sql.SQL("update_time = %(now)s")]
        params: dict[str, Any] = {"now": now, "id": mid, "tenant_id": tid}
        if isinstance(content, str):
            params["content"] = content
            if "\\" in content:
                params["content_esc"] = _escape(content)
                sets.append(
                    sql.SQL("content = CASE WHEN nul_escaped THEN %(content_esc)s ELSE %(content)s END")
                )
            else:
                sets.append(sql.SQL("content = %(content)s"))
        if isinstance(metadata, dict):
            params["metadata"] = q.json_param(metadata)
            params["metadata_esc"] = q.json_param(_map_strings(metadata, _escape))
            sets.append(
                sql.SQL("metadata = CASE WHEN nul_escaped THEN %(metadata_esc)s ELSE %(metadata)s END")
            )
        if isinstance(status, str):
            params["status"] = status
            sets.append(sql.SQL("status = %(status)s"))
        query = sql.SQL(
            "UPDATE entity_message SET {} WHERE id = %(id)s AND tenant_id = %(tenant_id)s"
        ).format(sql.SQL(", ").join(sets))
        async with self._conn(tx, doing, tenant=tid) as conn, conn.cursor() as cur:
            await cur.execute(query, params)
            if cur.rowcount == 0:
                raise NotFoundError(f"{doing}: message {mid} not found for tenant {tid}")

    async def _rewrite_message(
        self,
        tid: uuid.UUID,
        mid: uuid.UUID,
        content: str | Unset,
        status: MessageStatus | Unset,
        metadata: dict[str, Any] | Unset,
        now: datetime,
        doing: str,
        tx: Any,
    ) -> None:
        """A new NUL may change how the whole row is stored: read it, merge, re-encode, write."""
        async with self._conn(tx, doing, atomic=True, tenant=tid) as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(q.LOCK_MESSAGE_SQL, (mid, tid))
            row = await cur.fetchone()
            if row is None:
                raise NotFoundError(f"{doing}: message {mid} not found for tenant {tid}")
            old_content, old_meta = decode_row(row["content"], row["metadata"], row["nul_escaped"])
            new_content = old_content if isinstance(content, Unset) else content
            new_meta = old_meta if isinstance(metadata, Unset) else metadata
            enc_content, enc_meta, escaped = encode_row(new_content, new_meta)
            await cur.execute(
                q.REWRITE_MESSAGE_SQL,
                (
                    enc_content,
                    q.json_param(enc_meta),
                    escaped,
                    None if isinstance(status, Unset) else status,
                    now,
                    mid,
                    tid,
                ),
            )

    async def get_message(self, tenant_id: uuid.UUID, message_id: uuid.UUID) -> Message | None:
        tid, mid = _uid(tenant_id, "tenant_id"), _uid(message_id, "message_id")
        row = await self._row(q.GET_MESSAGE_SQL, (mid, tid), f"reading message {mid}", tenant=tid)
        return None if row is None else self._message(row)

    async def get_session_messages(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> list[Message]:
        tid, sid = _uid(tenant_id, "tenant_id"), _uid(session_id, "session_id")
        rows = await self._rows(
            q.SESSION_MESSAGES_SQL, (sid, tid), f"reading the messages of session {sid}", tenant=tid
        )
        return [self._message(r) for r in rows]

    async def get_session_messages_paginated(
        self, tenant_id: uuid.UUID, session_id: uuid.UUID, offset: int, limit: int
    ) -> list[Message]:
        check_page(offset, limit)
        tid, sid = _uid(tenant_id, "tenant_id"), _uid(session_id, "session_id")
        rows = await self._rows(
            q.SESSION_MESSAGES_PAGE_SQL, (sid, tid, offset, limit), f"reading the messages of session {sid}", tenant=tid
        )
        return [self._message(r) for r in rows]

    async def get_last_messages(self, tenant_id: uuid.UUID, session_id: uuid.UUID, k: int) -> list[Message]:
        # any k the store gate lets through (up to 2**63 - 1): "the last k" is bounded by the session anyway
        if k == 0:
            return []
        tid, sid = _uid(tenant_id, "tenant_id"), _uid(session_id, "session_id")
        rows = await self._rows(
            q.LAST_MESSAGES_SQL, (sid, tid, k), f"reading the last messages of session {sid}", tenant=tid
        )
        return [self._message(r) for r in reversed(rows)]

    async def delete_message(self, tenant_id: uuid.UUID, message_id: uuid.UUID, *, tx: Any = None) -> bool:
        tid, mid = _uid(tenant_id, "tenant_id"), _uid(message_id, "message_id")
        n = await self._count(
            "DELETE FROM entity_message WHERE id = %s AND tenant_id = %s",
            (mid, tid),
            f"deleting message {mid}",
            tx, tenant=tid,
        )
        return n > 0

    async def delete_session_messages(
        self, tenant_id: uuid.UUID, session_id: uuid.UUID, *, tx: Any = None
    ) -> int:
        tid, sid = _uid(tenant_id, "tenant_id"), _uid(session_id, "session_id")
        return await self._count(
            "DELETE FROM entity_message WHERE session_id = %s AND tenant_id = %s",
            (sid, tid),
            f"deleting the messages of session {sid}",
            tx, tenant=tid,
        )

    async def count_session_messages(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> int:
        tid, sid = _uid(tenant_id, "tenant_id"), _uid(session_id, "session_id")
        row = await self._row(
            "SELECT count(*) AS n FROM entity_message WHERE session_id = %s AND tenant_id = %s",
            (sid, tid),
            f"counting the messages of session {sid}", tenant=tid,
        )
        return int(row["n"]) if row else 0

    async def mark_interrupted(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> int:
        tid, sid = _uid(tenant_id, "tenant_id"), _uid(session_id, "session_id")
        now = utc_now()
        return await self._count(
            "UPDATE entity_message SET status = 'interrupted', update_time = %s"
            " WHERE session_id = %s AND tenant_id = %s AND status = 'streaming' AND update_time < %s",
            (now, sid, tid, now - timedelta(seconds=self.streaming_lease_seconds)),
            f"marking interrupted replies of session {sid}", tenant=tid,
        )

    # -- sessions ------------------------------------------------------------------------------------
    async def create_session(self, session: Session, *, tx: Any = None) -> Session:
        params = {
            "id": session.id,
            "tenant_id": session.tenant_id,
            "user_id": session.user_id,
            "agent_id": session.agent_id,
            "title": session.title,
            "metadata": q.json_param(session.metadata),
            "create_time": q.ts(session.create_time),
            "update_time": q.ts(session.update_time),
        }
        doing = f"creating session {session.id}"
        # Insert-or-read; a concurrent delete between the two can only happen a bounded number of times.
        for _ in range(3):
            row = await self._row(q.INSERT_SESSION_SQL, params, doing, tx, tenant=session.tenant_id)
            if row is not None:
                return q.session_from_row(row)
            row = await self._row(q.SESSION_BY_ID_SQL, (session.id,), doing, tx, tenant=session.tenant_id)
            if row is None and self._row_level_security:
                # the id is taken (the insert did nothing) by a row this tenant is not allowed to see
                raise TenantMismatchError(f"session {session.id} already exists and belongs to another tenant")
            if row is None:
                continue
            if row["tenant_id"] != session.tenant_id or row["user_id"] != session.user_id:
                raise TenantMismatchError(
                    f"session {session.id} already exists and belongs to another tenant or user"
                )
            return q.session_from_row(row)
        raise ConflictError(f"{doing}: the row kept changing under concurrent writers; try again")

    async def get_session(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> Session | None:
        tid, sid = _uid(tenant_id, "tenant_id"), _uid(session_id, "session_id")
        row = await self._row(q.GET_SESSION_SQL, (sid, tid), f"reading session {sid}", tenant=tid)
        return None if row is None else q.session_from_row(row)

    async def get_user_sessions(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, *, offset: int = 0, limit: int = 50
    ) -> list[Session]:
        check_page(offset, limit)
        tid, uid = _uid(tenant_id, "tenant_id"), _uid(user_id, "user_id")
        rows = await self._rows(
            q.USER_SESSIONS_SQL, (tid, uid, offset, limit), f"listing the sessions of user {uid}", tenant=tid
        )
        return [q.session_from_row(r) for r in rows]

    async def update_session(
        self,
        tenant_id: uuid.UUID,
        session_id: uuid.UUID,
        *,
        title: str | Unset | None = UNSET,
        metadata: dict[str, Any] | Unset = UNSET,
        tx: Any = None,
    ) -> Session:
        tid, sid = _uid(tenant_id, "tenant_id"), _uid(session_id, "session_id")
        doing = f"updating session {sid}"
        sets: list[sql.Composable] = [sql.SQL("update_time = %(now)s")]
        params: dict[str, Any] = {"now": utc_now(), "id": sid, "tenant_id": tid}
        if not isinstance(title, Unset):
            if title is not None:
                if not isinstance(title, str):
                    raise ValidationError(f"title must be a str or None, got {type(title).__name__}")
                check_text(title, "title")
                if "\x00" in title:
                    raise ValidationError("title must not contain NUL characters")
            params["title"] = title
            sets.append(sql.SQL("title = %(title)s::text"))
        if not isinstance(metadata, Unset):
            if not isinstance(metadata, dict):
                raise ValidationError(f"metadata must be a dict, got {type(metadata).__name__}")
            metadata = check_json(metadata, "metadata")
            if has_nul(metadata):
                raise ValidationError("session metadata must not contain NUL characters")
            params["metadata"] = q.json_param(metadata)
            sets.append(sql.SQL("metadata = %(metadata)s"))
        query = sql.SQL(
            "UPDATE entity_session SET {} WHERE id = %(id)s AND tenant_id = %(tenant_id)s RETURNING {}"
        ).format(sql.SQL(", ").join(sets), q.SESSION)
        async with self._conn(tx, doing, tenant=tid) as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, params)
            row = await cur.fetchone()
        if row is None:
            raise NotFoundError(f"{doing}: session {sid} not found for tenant {tid}")
        return q.session_from_row(row)

    async def delete_session(self, tenant_id: uuid.UUID, session_id: uuid.UUID, *, tx: Any = None) -> bool:
        tid, sid = _uid(tenant_id, "tenant_id"), _uid(session_id, "session_id")
        # messages and api calls go with it (ON DELETE CASCADE)
        n = await self._count(
            "DELETE FROM entity_session WHERE id = %s AND tenant_id = %s",
            (sid, tid),
            f"deleting session {sid}",
            tx, tenant=tid,
        )
        return n > 0

    # -- api calls -----------------------------------------------------------------------------------
    async def save_api_call(self, call: LLMApiCall, *, tx: Any = None) -> LLMApiCall:
        doing = f"saving api call {call.id}"
        n = await self._count(q.INSERT_CALL_SQL, q.call_params(call), doing, tx, tenant=call.tenant_id)
        if n == 0:
            raise NotFoundError(f"{doing}: session {call.session_id} not found for tenant {call.tenant_id}")
        return call

    async def save_api_calls(self, calls: Sequence[LLMApiCall], *, tx: Any = None) -> list[LLMApiCall]:
        if not calls:
            return []
        doing = f"saving {len(calls)} api calls"
        async with self._conn(tx, doing, atomic=True, tenant=calls[0].tenant_id) as conn, conn.cursor() as cur:
            for call in calls:
                await cur.execute(q.INSERT_CALL_SQL, q.call_params(call))
                if cur.rowcount == 0:
                    raise NotFoundError(
                        f"{doing}: session {call.session_id} not found for tenant {call.tenant_id}"
                    )
        return list(calls)

    async def get_api_call(self, tenant_id: uuid.UUID, call_id: uuid.UUID) -> LLMApiCall | None:
        tid, cid = _uid(tenant_id, "tenant_id"), _uid(call_id, "call_id")
        row = await self._row(q.GET_CALL_SQL, (cid, tid), f"reading api call {cid}", tenant=tid)
        return None if row is None else q.call_from_row(row)

    async def query_api_calls(self, query: QueryFilter) -> list[LLMApiCall]:
        where, params = q.where_of(query)
        params |= {"offset": query.offset, "limit": query.limit}
        stmt = sql.Composed(
            [
                sql.SQL(q.QUERY_CALLS_SELECT),
                where,
                sql.SQL(" ORDER BY create_time DESC, id DESC OFFSET %(offset)s LIMIT %(limit)s"),
            ]
        )
        rows = await self._rows(stmt.as_string(None), params, "querying api calls", tenant=query.tenant_id)
        return [q.call_from_row(r) for r in rows]

    async def get_statistics(self, query: QueryFilter) -> UsageStatistics:
        where, params = q.where_of(query)
        stmt = sql.Composed([sql.SQL(q.STATISTICS_SELECT), where])
        row = await self._row(stmt.as_string(None), params, "computing usage statistics", tenant=query.tenant_id)
        assert row is not None  # an aggregate always returns one row
        return UsageStatistics(
            total_calls=row["total_calls"],
            calls_by_status={s: row[f"n_{s}"] for s in q.CALL_STATUSES if row[f"n_{s}"]},
            prompt_tokens=row["prompt_tokens"],
            completion_tokens=row["completion_tokens"],
            total_tokens=row["total_tokens"],
            total_price=row["total_price"],
            avg_latency_ms=row["avg_latency_ms"],
            p50_latency_ms=row["p50_latency_ms"],
            p95_latency_ms=row["p95_latency_ms"],
            p50_time_to_first_token_ms=row["p50_time_to_first_token_ms"],
            p95_time_to_first_token_ms=row["p95_time_to_first_token_ms"],
            avg_tokens_per_second=row["avg_tokens_per_second"],
        )

    async def cleanup_old_records(self, before: datetime, *, tenant_id: uuid.UUID | None = None) -> int:
        if not isinstance(before, datetime):
            raise ConfigError(f"before must be a datetime, got {type(before).__name__}")
        if tenant_id is None:
            return await self._count(
                "DELETE FROM entity_api_call WHERE create_time < %s",
                (q.ts(before),),
                "deleting old api calls",
            )
        tid = _uid(tenant_id, "tenant_id")
        return await self._count(
            "DELETE FROM entity_api_call WHERE create_time < %s AND tenant_id = %s",
            (q.ts(before), tid),
            f"deleting old api calls of tenant {tid}", tenant=tid,
        )

    # -- providers -----------------------------------------------------------------------------------
    async def create_provider(self, provider: Provider) -> Provider:
        doing = f"creating provider {provider.provider_name!r} in tenant {provider.tenant_id}"
        try:
            await self._count(q.INSERT_PROVIDER_SQL, q.provider_params(provider), doing, tenant=provider.tenant_id)
        except ConflictError as exc:
            raise ConflictError(
                f"{doing}: the tenant already has a provider of that name (or the id {provider.id} is taken)"
            ) from exc.__cause__
        return provider.model_copy(deep=True)

    async def update_provider(self, provider: Provider) -> Provider:
        updated = provider.model_copy(update={"update_time": utc_now()}, deep=True)
        doing = f"updating provider {provider.id}"
        try:
            row = await self._row(q.UPDATE_PROVIDER_SQL, q.provider_params(updated), doing, tenant=provider.tenant_id)
        except ConflictError as exc:
            raise ConflictError(
                f"{doing}: the tenant already has a provider named {provider.provider_name!r}"
            ) from exc.__cause__
        if row is None:
            raise NotFoundError(f"{doing}: provider {provider.id} not found for tenant {provider.tenant_id}")
        return updated.model_copy(update={"create_time": q.utc(row["create_time"])})

    async def delete_provider(self, tenant_id: uuid.UUID, provider_id: uuid.UUID) -> bool:
        tid, pid = _uid(tenant_id, "tenant_id"), _uid(provider_id, "provider_id")
        doing = f"deleting provider {pid}"
        try:
            n = await self._count(
                "DELETE FROM entity_provider WHERE id = %s AND tenant_id = %s", (pid, tid), doing, tenant=tid
            )
        except ConflictError as exc:
            raise ConflictError(
                f"{doing}: agents still use it; delete or repoint them first"
            ) from exc.__cause__
        return n > 0

    async def get_provider(self, tenant_id: uuid.UUID, provider_id: uuid.UUID) -> Provider | None:
        tid, pid = _uid(tenant_id, "tenant_id"), _uid(provider_id, "provider_id")
        row = await self._row(q.GET_PROVIDER_SQL, (pid, tid), f"reading provider {pid}", tenant=tid)
        return None if row is None else q.provider_from_row(row)

    async def get_provider_by_name(self, tenant_id: uuid.UUID, name: str) -> Provider | None:
        tid = _uid(tenant_id, "tenant_id")
        row = await self._row(q.PROVIDER_BY_NAME_SQL, (tid, name), f"reading provider {name!r}", tenant=tid)
        return None if row is None else q.provider_from_row(row)

    async def list_providers(self, tenant_id: uuid.UUID) -> list[Provider]:
        tid = _uid(tenant_id, "tenant_id")
        rows = await self._rows(q.LIST_PROVIDERS_SQL, (tid,), f"listing the providers of tenant {tid}", tenant=tid)
        return [q.provider_from_row(r) for r in rows]

    async def get_enabled_providers(self, tenant_id: uuid.UUID) -> list[Provider]:
        tid = _uid(tenant_id, "tenant_id")
        rows = await self._rows(
            q.ENABLED_PROVIDERS_SQL, (tid,), f"listing the enabled providers of tenant {tid}", tenant=tid
        )
        return [q.provider_from_row(r) for r in rows]

    # -- agents --------------------------------------------------------------------------------------
    async def create_agent(self, agent: Agent) -> Agent:
        doing = f"creating agent {agent.agent_code!r} in tenant {agent.tenant_id}"
        try:
            n = await self._count(q.INSERT_AGENT_SQL, q.agent_params(agent), doing, tenant=agent.tenant_id)
        except ConflictError as exc:
            raise ConflictError(
                f"{doing}: the tenant already has an agent with that code (or the id {agent.id} is taken)"
            ) from exc.__cause__
        if n == 0:
            raise NotFoundError(
                f"{doing}: provider {agent.provider_id} not found for tenant {agent.tenant_id}"
            )
        return agent.model_copy(deep=True)

    async def update_agent(self, agent: Agent) -> Agent:
        updated = agent.model_copy(update={"update_time": utc_now()}, deep=True)
        doing = f"updating agent {agent.id}"
        try:
            row = await self._row(q.UPDATE_AGENT_SQL, q.agent_params(updated), doing, tenant=agent.tenant_id)
        except ConflictError as exc:
            raise ConflictError(
                f"{doing}: the tenant already has an agent with code {agent.agent_code!r}"
            ) from exc.__cause__
        if row is None:
            if await self.get_agent(agent.tenant_id, agent.id) is None:
                raise NotFoundError(f"{doing}: agent {agent.id} not found for tenant {agent.tenant_id}")
            raise NotFoundError(
                f"{doing}: provider {agent.provider_id} not found for tenant {agent.tenant_id}"
            )
        return updated.model_copy(update={"create_time": q.utc(row["create_time"])})

    async def delete_agent(self, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> bool:
        tid, aid = _uid(tenant_id, "tenant_id"), _uid(agent_id, "agent_id")
        n = await self._count(
            "DELETE FROM entity_agent WHERE id = %s AND tenant_id = %s", (aid, tid), f"deleting agent {aid}", tenant=tid
        )
        return n > 0

    async def get_agent(self, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> Agent | None:
        tid, aid = _uid(tenant_id, "tenant_id"), _uid(agent_id, "agent_id")
        row = await self._row(q.GET_AGENT_SQL, (aid, tid), f"reading agent {aid}", tenant=tid)
        return None if row is None else q.agent_from_row(row)

    async def get_agent_by_code_and_tenant(self, tenant_id: uuid.UUID, code: str) -> Agent | None:
        tid = _uid(tenant_id, "tenant_id")
        row = await self._row(q.AGENT_BY_CODE_SQL, (tid, code), f"reading agent {code!r}", tenant=tid)
        return None if row is None else q.agent_from_row(row)

    async def list_agents(self, tenant_id: uuid.UUID) -> list[Agent]:
        tid = _uid(tenant_id, "tenant_id")
        rows = await self._rows(q.LIST_AGENTS_SQL, (tid,), f"listing the agents of tenant {tid}", tenant=tid)
        return [q.agent_from_row(r) for r in rows]

    async def get_active_agents(self, tenant_id: uuid.UUID) -> list[Agent]:
        tid = _uid(tenant_id, "tenant_id")
        rows = await self._rows(q.ACTIVE_AGENTS_SQL, (tid,), f"listing the active agents of tenant {tid}", tenant=tid)
        return [q.agent_from_row(r) for r in rows]

    # -- api keys --------------------------------------------------------------------------------------
    async def create_api_key(self, key: ApiKey) -> ApiKey:
        doing = f"creating api key {key.id}"
        try:
            await self._count(
                "INSERT INTO entity_api_key (id, tenant_id, user_id, name, key_hash, key_hint, create_time,"
                " last_used_time, revoke_time) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (key.id, key.tenant_id, key.user_id, key.name, key.key_hash, key.key_hint, q.ts(key.create_time),
                 key.last_used_time and q.ts(key.last_used_time), key.revoke_time and q.ts(key.revoke_time)),
                doing,
            )
        except ConflictError as exc:
            raise ConflictError(f"{doing}: the id or the key exists already") from exc.__cause__
        return key.model_copy(deep=True)

    async def _api_keys(self, by_hash: bool, value: Any) -> list[ApiKey]:
        rows = await self._rows(_API_KEY_BY_HASH if by_hash else _API_KEYS_OF_TENANT, (value,), "reading api keys")
        return [
            ApiKey(**{**r, "create_time": q.utc(r["create_time"]),
                      "last_used_time": r["last_used_time"] and q.utc(r["last_used_time"]),
                      "revoke_time": r["revoke_time"] and q.utc(r["revoke_time"])})
            for r in rows
        ]

    async def get_api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        found = await self._api_keys(True, key_hash)
        return found[0] if found else None

    async def list_api_keys(self, tenant_id: uuid.UUID) -> list[ApiKey]:
        return await self._api_keys(False, _uid(tenant_id, "tenant_id"))

    async def revoke_api_key(self, tenant_id: uuid.UUID, key_id: uuid.UUID) -> bool:
        tid, kid = _uid(tenant_id, "tenant_id"), _uid(key_id, "key_id")
        n = await self._count(
            "UPDATE entity_api_key SET revoke_time = %s WHERE id = %s AND tenant_id = %s AND revoke_time IS NULL",
            (utc_now(), kid, tid),
            f"revoking api key {kid}",
        )
        return n > 0

    async def touch_api_key(self, tenant_id: uuid.UUID, key_id: uuid.UUID, used_at: datetime) -> None:
        tid, kid = _uid(tenant_id, "tenant_id"), _uid(key_id, "key_id")
        await self._count(
            "UPDATE entity_api_key SET last_used_time = %s WHERE id = %s AND tenant_id = %s",
            (q.ts(used_at), kid, tid),
            f"recording the use of api key {kid}",
        )

    async def find_sessions_by_id(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, fragment: str, *, limit: int = 10
    ) -> list[Session]:
        frag = check_id_fragment(fragment)
        check_page(0, limit)
        tid, uid = _uid(tenant_id, "tenant_id"), _uid(user_id, "user_id")
        rows = await self._rows(
            q.SESSIONS_BY_ID_FRAGMENT_SQL, (tid, uid, frag + "%", "%" + frag, limit),
            f"finding the sessions of user {uid} by id", tenant=tid,
        )
        return [q.session_from_row(r) for r in rows]

    async def search_messages(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, text: str, *, limit: int = 20
    ) -> list[Message]:
        words = search_words(text)
        check_page(0, limit)
        tid, uid = _uid(tenant_id, "tenant_id"), _uid(user_id, "user_id")
        rows = await self._rows(
            q.SEARCH_MESSAGES_SQL, (" ".join(words), tid, uid, limit),
            f"searching the messages of user {uid}", tenant=tid,
        )
        return [self._message(r) for r in rows]


_API_KEY_SELECT = (
    "SELECT id, tenant_id, user_id, name, key_hash, key_hint, create_time, last_used_time, revoke_time"
    " FROM entity_api_key WHERE "
)
_API_KEY_BY_HASH = _API_KEY_SELECT + "key_hash = %s"
_API_KEYS_OF_TENANT = _API_KEY_SELECT + "tenant_id = %s ORDER BY create_time DESC, id DESC"
