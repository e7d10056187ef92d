"""PostgreSQL store: psycopg 3 on an ``AsyncConnectionPool``, every query parameterised and tenant-scoped.

The operations are :class:`~._sql.SqlStore`'s; this module holds what is PostgreSQL's own: the pool and its
connect options, row-level security, the rewrite of a message row that gains a NUL, the error mapping and the
advisory migration lock.
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
import select
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar, cast

import psycopg
from psycopg import errors as pgerr
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from .._redact import is_secret_name, redact_text, redact_url, scrub_chain, url_secrets
from ..entities import MessageStatus
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
from ._codec import decode_row, encode_row
from ._sql import Doing, KeyConflict, MigrationStep, Row, SqlStore
from ._store import Transaction, Unset, schema_fallback

__all__ = ["PostgresStore"]

Conn = psycopg.AsyncConnection[Any]


def _check_tx(tx: Transaction | None) -> Conn:
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


#: how long a read waits on the pool before asking the server directly whether it is up
_READ_WAIT_SECONDS = 1.0
#: how long that direct question may take (a stopped server refuses at once)
_PROBE_SECONDS = 2.0
#: what a server shutting down, crashed or starting up answers a connect with: down, not busy
_DOWN_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})


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


class PostgresStore(SqlStore):
    """The PostgreSQL store. Make one with :meth:`connect`, :meth:`shared` or :meth:`from_env`."""

    dialect = "postgres"
    _dialect = q.DIALECT

    def __init__(
        self,
        pool: AsyncConnectionPool[Conn],
        target: _Target,
        *,
        connect_timeout: float,
        streaming_lease_seconds: float,
        row_level_security: bool = False,
        new_pool: Callable[[], AsyncConnectionPool[Conn]] | None = None,
        connect_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self._pool = pool
        self._new_pool = new_pool
        self._connect_kwargs = dict(connect_kwargs or {"autocommit": True})
        #: set when a read found the server unreachable, cleared by the first connect that succeeds
        self._down = False
        self._old_pools: set[asyncio.Task[None]] = set()
        self._probing = asyncio.Lock()
        self._answered_at = -math.inf  # when a probe last found the server up (time.monotonic())
        self._row_level_security = row_level_security
        self._hides_other_tenants = row_level_security
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
        def new_pool() -> AsyncConnectionPool[Conn]:
            return AsyncConnectionPool(
                url,
                min_size=min_connections,
                max_size=max_connections,
                kwargs=kwargs,
                timeout=connect_timeout,
                open=False,
                name=f"mofa {target.host}:{target.port}/{target.dbname}",
                # a connection killed by a server restart is noticed (and replaced) when it is handed
                # out, not by the next statement
                check=_check_connection,
            )

        pool = new_pool()
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
            new_pool=new_pool,
            connect_kwargs=kwargs,
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
            for task in list(self._old_pools):
                await asyncio.gather(task, return_exceptions=True)

    def pool_stats(self) -> dict[str, int]:
        """The pool's counters (``pool_size``, ``pool_available``, ``requests_waiting`` …)."""
        return self._pool.get_stats()

    # -- errors and connections ----------------------------------------------------------------------
    def _wrap(self, exc: psycopg.Error, doing: Doing) -> MofaError:
        detail = self._target.clean(str(exc).strip()) or type(exc).__name__
        if isinstance(exc, PoolClosed):
            if not self._closed:  # a pool replaced after an outage, not a closed store: try again
                return DatabaseUnavailableError(f"{doing}: the connection pool was renewed; try again")
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
            return KeyConflict(f"{doing}: {detail}")
        if isinstance(exc, pgerr.SerializationFailure | pgerr.DeadlockDetected | pgerr.LockNotAvailable):
            return ConflictError(f"{doing}: a concurrent change got in the way ({detail})")
        if isinstance(exc, pgerr.IntegrityError | psycopg.DataError):
            return ValidationError(f"{doing}: the database refused the value ({detail})")
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return DatabaseUnavailableError(
                f"{doing}: PostgreSQL at {self._target} is unavailable ({detail})"
            )
        return PersistenceError(f"{doing}: {detail}")

    # -- outages: reads fail fast and recover at once ------------------------------------------------
    async def _direct(self) -> Conn:
        """One connection outside the pool, given up after _PROBE_SECONDS (refused at once when the
        server is down)."""
        return await asyncio.wait_for(
            psycopg.AsyncConnection.connect(self._target.url, **self._connect_kwargs), _PROBE_SECONDS
        )

    async def _probe(self, doing: Doing) -> Conn | None:
        """A direct connection; None when the server answered but refused one (too many clients, say: it is
        up, the pool is the place to wait); DatabaseUnavailableError (and the store marked down) at once
        when it cannot be reached or is shutting down or starting up."""
        try:
            conn = await self._direct()
        except (TimeoutError, OSError, psycopg.Error) as exc:
            if isinstance(exc, psycopg.Error) and exc.sqlstate and exc.sqlstate not in _DOWN_SQLSTATES:
                return None
            self._down = True
            detail = self._target.clean(str(exc).strip()) if isinstance(exc, psycopg.Error) else ""
            raise DatabaseUnavailableError(
                f"{doing}: PostgreSQL at {self._target} is unavailable"
                + (f" ({detail})" if detail else f" (no answer within {_PROBE_SECONDS:g}s)")
            ) from None
        if self._down:
            self._down = False
            self._renew_pool()
        return conn

    async def _probe_once(self, doing: Doing) -> Conn | None:
        """``_probe``, by one read at a time and at most once per _PROBE_SECONDS while the server answers:
        under load many reads wait on a busy pool, and a connect each would only slow the database down."""
        async with self._probing:
            if time.monotonic() - self._answered_at < _PROBE_SECONDS:
                return None  # it answered a moment ago: the pool is busy, not the server down
            conn = await self._probe(doing)
            self._answered_at = time.monotonic()
            return conn

    def _renew_pool(self) -> None:
        """After an outage, a fresh pool: the old one's reconnect attempts back off (1, 2, 4, 8 … s) and
        would keep requests waiting long after the server is back; its connections in use close on return."""
        if self._new_pool is None or self._closed:
            return
        old, self._pool = self._pool, self._new_pool()

        async def swap() -> None:
            try:
                await self._pool.open(wait=False)
            finally:
                await old.close(timeout=self._connect_timeout)

        task = asyncio.get_running_loop().create_task(swap())
        self._old_pools.add(task)
        task.add_done_callback(self._old_pools.discard)

    @asynccontextmanager
    async def _read_conn(self, doing: Doing) -> AsyncIterator[Conn]:
        """A connection for a read that fails fast during an outage: while the store is marked down, or
        when the pool has none within _READ_WAIT_SECONDS, the server is asked directly; a refusal is a
        DatabaseUnavailableError (503) at once, an answer serves the read (the first one after an outage)
        or, when the pool is merely busy, the read waits on the pool for the rest of connect_timeout."""
        pool = self._pool
        direct: Conn | None = None
        if self._down:
            direct = await self._probe(doing)
        if direct is None:
            try:
                conn = await pool.getconn(timeout=min(_READ_WAIT_SECONDS, self._connect_timeout))
            except PoolTimeout:
                probe = await self._probe_once(doing)
                if probe is not None and pool is self._pool and pool.get_stats().get("connections_errors", 0):
                    # the server is up but the pool failed to connect: it is backing off after an
                    # outage nobody read through, not busy
                    self._renew_pool()
                if probe is not None and pool is not self._pool:
                    direct = probe  # the server came back: this read goes first, on the probe
                else:
                    if probe is not None:
                        await probe.close()
                    pool = self._pool  # renewed meanwhile by another read, perhaps
                    conn = await pool.getconn(timeout=max(0.1, self._connect_timeout - _READ_WAIT_SECONDS))
            if direct is None:
                try:
                    yield conn
                except psycopg.OperationalError:
                    if conn.closed or conn.broken:
                        self._down = True  # the next read asks the server directly
                    raise
                finally:
                    await pool.putconn(conn)
                return
        try:
            yield direct
        finally:
            await direct.close()

    @asynccontextmanager
    async def _conn(
        self, tx: Transaction | None, doing: Doing, *, atomic: bool = False, tenant: uuid.UUID | None = None,
        read: bool = False,
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
                pooled = self._read_conn(doing) if read and not atomic else self._pool.connection()
                async with pooled as conn:
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

    def _reading(self, doing: Doing, tenant: uuid.UUID | None) -> AbstractAsyncContextManager[Conn]:
        return self._conn(None, doing, tenant=tenant, read=True)

    def _writing(
        self, doing: Doing, tx: Transaction | None, tenant: uuid.UUID | None, *, atomic: bool = False
    ) -> AbstractAsyncContextManager[Conn]:
        return self._conn(tx, doing, atomic=atomic, tenant=tenant)

    async def _fetch(self, conn: Conn, sql: str, params: Mapping[str, Any]) -> list[Row]:
        async with conn.cursor() as cur:
            await cur.execute(sql, params)
            return await cur.fetchall()

    async def _fetch_planned(self, conn: Conn, sql: str, params: Mapping[str, Any]) -> list[Row]:
        # prepare=False: never a cached generic plan (psycopg prepares from the 5th run, and PostgreSQL may
        # keep a generic plan from the 11th); the planner sees this run's values
        async with conn.cursor() as cur:
            await cur.execute(sql, params, prepare=False)
            return await cur.fetchall()

    async def _execute(self, conn: Conn, sql: str, params: Mapping[str, Any]) -> int:
        async with conn.cursor() as cur:
            await cur.execute(sql, params)
            return max(cur.rowcount, 0)

    async def _execute_many(self, conn: Conn, sql: str, params: Sequence[Mapping[str, Any]]) -> None:
        async with conn.cursor() as cur:
            await cur.executemany(sql, params)

    def transaction(self) -> AbstractAsyncContextManager[Conn]:
        """``async with store.transaction() as tx:`` yields a psycopg AsyncConnection in a transaction."""
        return self._conn(None, "running a transaction", atomic=True)

    # -- schema --------------------------------------------------------------------------------------
    async def _migrate_if_needed(self) -> list[str]:
        if all(applied is not None for _, applied in await self.migration_status()):
            return []
        return await self.migrate()

    @_scrubbed
    async def migrate(self) -> list[str]:
        """Apply pending migrations, each in its own transaction under an advisory lock."""
        return await super().migrate()

    @asynccontextmanager
    async def _migrating(self) -> AsyncIterator[MigrationStep]:
        doing = f"migrating the schema of {self._target}"
        try:
            # A connection of its own, closed at the end: no lock can ever stay behind on a pooled
            # connection, whatever happens (cancellation included).
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

        @asynccontextmanager
        async def step(doing: str) -> AsyncIterator[Conn]:
            try:
                # A transaction-level lock, taken again for each migration: COMMIT or ROLLBACK always
                # releases it, also behind a transaction pooler (PgBouncer), where a session-level
                # lock and its unlock may run on two different server connections.
                async with conn.transaction():
                    await conn.execute(q.XACT_LOCK_SQL)
                    yield conn
            except psycopg.Error as exc:
                raise self._wrap(exc, f"{doing} to {self._target}") from exc

        async with conn:
            yield step

    async def _run_script(self, conn: Conn, script: str) -> None:
        await conn.execute(script.encode())  # several statements: the simple query protocol

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
            pinned[role] = parse_uuid(tenant, f"the tenant of role {role!r}")
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
        async with self._conn(None, "checking row-level security") as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(q.RLS_STATE_SQL)
            row = await cur.fetchone()
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

    # -- messages ------------------------------------------------------------------------------------
    async def _rewrite_message(
        self,
        tenant_id: uuid.UUID,
        message_id: uuid.UUID,
        content: str | Unset,
        status: MessageStatus | Unset,
        metadata: dict[str, Any] | Unset,
        delta_ends: list[int] | Unset | None,
        tx: Transaction | None,
    ) -> None:
        """A new NUL may change how the whole row is stored: read it, merge, re-encode, write."""
        doing = f"updating message {message_id}"
        scope = self._conn(tx, doing, atomic=True, tenant=tenant_id)
        async with scope as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(q.LOCK_MESSAGE_SQL, (message_id, tenant_id))
            row = await cur.fetchone()
            if row is None:
                raise NotFoundError(f"cannot update message {message_id}: not found for this tenant")
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
                    not isinstance(delta_ends, Unset),
                    None if isinstance(delta_ends, Unset) else q.json_param(delta_ends),
                    utc_now(),
                    message_id,
                    tenant_id,
                ),
            )
