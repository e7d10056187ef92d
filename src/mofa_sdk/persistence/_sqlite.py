"""SqliteStore: the store contract on one SQLite file through aiosqlite (the zero-set-up default).

One store holds one connection. An asyncio lock serialises its operations, so any number of tasks may
share it; writes open ``BEGIN IMMEDIATE`` transactions and the connection waits ``busy_timeout`` for the
file's write lock, so several stores (or processes) on one file take turns instead of failing.

Values are stored as the SQLite migration describes: uuids as text, UTC times as fixed-width text
(``%Y-%m-%dT%H:%M:%S.%fZ``, so text order is time order), JSON as text, booleans as integers.
"""

# ruff: noqa: S608  (SQL text here interpolates only module constants and fixed column names; values are bound)
from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager, suppress
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite
from pydantic import SecretStr

from .._stats import percentile_cont
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
)
from ..errors import (
    ConfigError,
    ConflictError,
    DatabaseUnavailableError,
    NotFoundError,
    PersistenceError,
    TenantMismatchError,
    ValidationError,
)
from ..ids import utc_now
from ._local_tx import LocalTransaction, current, entered, joins
from ._memory import check_message_update, check_session_update, utc
from ._secrets import decrypt_key, encrypt_key
from ._sqlite_thread import open_connection
from ._store import UNSET, Store, Unset, check_id_fragment, check_page, no_schema_diagnosis, search_words, settle_status

__all__ = ["SqliteStore", "SqliteTransaction"]

BUSY_TIMEOUT_MS = 30_000

_MSG = (
    "id, session_id, tenant_id, user_id, agent_id, seq, role, content, status, metadata, nul_escaped, "
    "parent_message_id, create_time, update_time"
)
_SESSION = "id, tenant_id, user_id, agent_id, title, metadata, create_time, update_time"
_CALL = (
    "id, tenant_id, session_id, user_id, agent_id, request_message_id, response_message_id, model_name, "
    "status, error_message, error_code, prompt_tokens, completion_tokens, total_tokens, "
    "prompt_tokens_details, completion_tokens_details, tokens_estimated, price, price_details, latency_ms, "
    "time_to_first_token_ms, tokens_per_second, provider_response_id, create_time"
)
_PROVIDER = (
    "id, tenant_id, provider_name, provider_type, api_base, api_key, enabled, create_time, update_time"
)
_AGENT = (
    "id, tenant_id, agent_code, agent_name, agent_order, agent_status, context_limit, custom_params, "
    "max_completion_tokens, model_name, provider_id, response_format, system_prompt, temperature, stream, "
    "thinking, create_time, update_time"
)


def _marks(cols: str) -> str:
    return ", ".join("?" for _ in cols.split(","))


# -- value conversion -----------------------------------------------------------------------------
def _ts(dt: datetime) -> str:
    d = utc(dt)
    # explicit widths: strftime's %Y is not zero-padded below year 1000 on every platform
    date = f"{d.year:04d}-{d.month:02d}-{d.day:02d}"
    return f"{date}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}.{d.microsecond:06d}Z"


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _id(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def _uuid(text: str | None) -> uuid.UUID | None:
    return None if text is None else uuid.UUID(text)


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, allow_nan=False)


def _unjson(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _message(r: Sequence[Any]) -> Message:
    return Message(
        id=uuid.UUID(r[0]), session_id=uuid.UUID(r[1]), tenant_id=uuid.UUID(r[2]), user_id=uuid.UUID(r[3]),
        agent_id=_uuid(r[4]), seq=r[5], role=r[6], content=r[7], status=r[8], metadata=json.loads(r[9]),
        parent_message_id=_uuid(r[11]), create_time=_dt(r[12]), update_time=_dt(r[13]),
    )  # fmt: skip


def _session(r: Sequence[Any]) -> Session:
    return Session(
        id=uuid.UUID(r[0]), tenant_id=uuid.UUID(r[1]), user_id=uuid.UUID(r[2]), agent_id=_uuid(r[3]),
        title=r[4], metadata=json.loads(r[5]), create_time=_dt(r[6]), update_time=_dt(r[7]),
    )  # fmt: skip


def _call(r: Sequence[Any]) -> LLMApiCall:
    return LLMApiCall(
        id=uuid.UUID(r[0]), tenant_id=uuid.UUID(r[1]), session_id=uuid.UUID(r[2]), user_id=uuid.UUID(r[3]),
        agent_id=_uuid(r[4]), request_message_id=_uuid(r[5]), response_message_id=_uuid(r[6]),
        model_name=r[7], status=r[8], error_message=r[9], error_code=r[10], prompt_tokens=r[11],
        completion_tokens=r[12], total_tokens=r[13], prompt_tokens_details=_unjson(r[14]),
        completion_tokens_details=_unjson(r[15]), tokens_estimated=bool(r[16]), price=r[17],
        price_details=_unjson(r[18]), latency_ms=r[19], time_to_first_token_ms=r[20], tokens_per_second=r[21],
        provider_response_id=r[22], create_time=_dt(r[23]),
    )  # fmt: skip


def _call_row(c: LLMApiCall) -> tuple[Any, ...]:
    return (
        str(c.id), str(c.tenant_id), str(c.session_id), str(c.user_id), _id(c.agent_id),
        _id(c.request_message_id), _id(c.response_message_id), c.model_name, c.status, c.error_message,
        c.error_code, c.prompt_tokens, c.completion_tokens, c.total_tokens, _json(c.prompt_tokens_details),
        _json(c.completion_tokens_details), int(c.tokens_estimated), c.price, _json(c.price_details),
        c.latency_ms, c.time_to_first_token_ms, c.tokens_per_second, c.provider_response_id,
        _ts(c.create_time),
    )  # fmt: skip


def _provider(r: Sequence[Any]) -> Provider:
    plain = decrypt_key(r[5], provider=r[2])
    return Provider(
        id=uuid.UUID(r[0]), tenant_id=uuid.UUID(r[1]), provider_name=r[2], provider_type=r[3], api_base=r[4],
        api_key=SecretStr(plain) if plain is not None else None, enabled=bool(r[6]),
        create_time=_dt(r[7]), update_time=_dt(r[8]),
    )  # fmt: skip


def _agent(r: Sequence[Any]) -> Agent:
    return Agent(
        id=uuid.UUID(r[0]), tenant_id=uuid.UUID(r[1]), agent_code=r[2], agent_name=r[3], agent_order=r[4],
        agent_status=bool(r[5]), context_limit=r[6], custom_params=_unjson(r[7]), max_completion_tokens=r[8],
        model_name=r[9], provider_id=uuid.UUID(r[10]), response_format=_unjson(r[11]), system_prompt=r[12],
        temperature=r[13], stream=bool(r[14]), thinking=_unjson(r[15]), create_time=_dt(r[16]),
        update_time=_dt(r[17]),
    )  # fmt: skip


def _agent_values(a: Agent) -> tuple[Any, ...]:
    """The agent's columns after (id, tenant_id) and before the times, in _AGENT order."""
    return (
        a.agent_code, a.agent_name, a.agent_order, int(a.agent_status), a.context_limit,
        _json(a.custom_params), a.max_completion_tokens, a.model_name, str(a.provider_id),
        _json(a.response_format), a.system_prompt, a.temperature, int(a.stream), _json(a.thinking),
    )  # fmt: skip


def _api_filter(q: QueryFilter) -> tuple[str, list[Any]]:
    """WHERE clause (fixed column names only; values are bound) selecting ``q``: [start_time, end_time)."""
    where, params = ["tenant_id = ?"], [str(q.tenant_id)]
    for column, value in (
        ("user_id", _id(q.user_id)),
        ("session_id", _id(q.session_id)),
        ("agent_id", _id(q.agent_id)),
        ("status", q.status),
        ("model_name", q.model_name),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if q.start_time is not None:
        where.append("create_time >= ?")
        params.append(_ts(q.start_time))
    if q.end_time is not None:
        where.append("create_time < ?")
        params.append(_ts(q.end_time))
    return " AND ".join(where), params


def path_from_url(url: str) -> str:
    """``sqlite:///rel/path.db`` → ``rel/path.db``; ``sqlite:////abs/path.db`` → ``/abs/path.db``."""
    if not isinstance(url, str) or not url.startswith("sqlite:///"):
        raise ConfigError(
            "an SQLite URL looks like sqlite:///relative/path.db or sqlite:////absolute/path.db "
            "(three slashes, then the path)"
        )
    path = url[len("sqlite:///") :]
    if not path or path.endswith("/"):
        raise ConfigError("the SQLite URL names no file: give a path after sqlite:///")
    return path


class _MissingSchema(PersistenceError):
    """A statement met a missing table or column; the store replaces it with a diagnosis."""


async def _switch_to_wal(conn: aiosqlite.Connection) -> None:
    """``PRAGMA journal_mode = WAL``, retried: on a new file that other connections are opening at the same
    moment, SQLite answers "database is locked" at once, without waiting through the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    pause = 0.005
    while True:
        try:
            await conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.2)


def _try_open(path: str) -> None:
    sqlite3.connect(path).close()


@contextmanager
def _errors(what: str) -> Iterator[None]:
    """SQLite's exceptions as mofa_sdk errors that say what was being done."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        text = str(exc)
        if "UNIQUE" in text or "PRIMARY KEY" in text:
            raise ConflictError(f"{what}: a row with the same key already exists ({text})") from exc
        if "FOREIGN KEY" in text:
            raise ConflictError(f"{what}: a row it refers to is missing, or rows still refer to it") from exc
        raise ValidationError(f"{what}: the database refused a value ({text})") from exc
    except sqlite3.OperationalError as exc:
        text = str(exc)
        if text.startswith(("no such table", "no such column")) or "has no column named" in text:
            raise _MissingSchema(text) from exc
        if "locked" in text or "busy" in text:
            raise ConflictError(f"{what}: the database stayed locked by another writer ({text})") from exc
        if "unable to open" in text or "disk" in text or "readonly" in text:
            raise DatabaseUnavailableError(f"{what}: {text}") from exc
        raise PersistenceError(f"{what}: {text}") from exc
    except sqlite3.Error as exc:
        raise PersistenceError(f"{what}: {exc}") from exc


async def _cleanup(conn: aiosqlite.Connection, statement: str) -> None:
    """Undo after a failure or cancellation. The statement is queued even when this task is cancelled
    again, and aiosqlite runs statements in order, so it also undoes a BEGIN/SAVEPOINT still in flight;
    "no transaction is active" just means there was nothing left to undo."""
    with suppress(sqlite3.Error):
        await conn.execute(statement)


class SqliteTransaction(LocalTransaction):
    """What ``SqliteStore.transaction()`` yields; pass it as ``tx=``. ``connection`` is the raw connection."""

    def __init__(self, store: SqliteStore, connection: aiosqlite.Connection) -> None:
        super().__init__(store)
        self.connection = connection


class SqliteStore(Store):
    """The store on an SQLite file. Make one with ``await SqliteStore.connect(url)`` or ``in_memory()``.

    ``tx=`` accepts what ``transaction()`` yields, or this store's own ``aiosqlite.Connection``
    (``store.connection``) when the caller opened a transaction on it: the write then joins that
    transaction. Inside ``async with store.transaction()``, reads and writes from the same task (or tasks
    it starts) without ``tx=`` join it too: there is one connection, so they cannot commit on their own.
    """

    dialect = "sqlite"

    def __init__(self, connection: aiosqlite.Connection, *, streaming_lease_seconds: float = 5.0) -> None:
        self.connection = connection
        self.streaming_lease_seconds = streaming_lease_seconds
        self._lock = asyncio.Lock()
        self._closed = False
        self._savepoints = 0

    def __repr__(self) -> str:
        return f"<SqliteStore {'closed' if self._closed else 'open'}>"

    @classmethod
    async def connect(
        cls, url: str, *, migrate: bool = True, streaming_lease_seconds: float = 5.0
    ) -> SqliteStore:
        """Open the database at ``url`` (creating folders and file as needed); migrate unless told not to."""
        path = path_from_url(url)
        if path != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseUnavailableError(
                    f"cannot create the folder of SQLite database {path}: {exc}"
                ) from exc
            # aiosqlite reports a failed open and only then stops its thread; when the error ends the
            # event loop (asyncio.run), that thread dies with a traceback. So a path that cannot be
            # opened is found here first, in a plain worker thread.
            with _errors(f"opening SQLite database {path}"):
                await asyncio.to_thread(_try_open, path)
        return await cls._open(path, migrate, streaming_lease_seconds)

    @classmethod
    async def in_memory(cls, *, migrate: bool = True, streaming_lease_seconds: float = 5.0) -> SqliteStore:
        """A private in-memory SQLite database (gone when closed)."""
        return await cls._open(":memory:", migrate, streaming_lease_seconds)

    @classmethod
    async def _open(cls, path: str, migrate: bool, lease: float) -> SqliteStore:
        with _errors(f"opening SQLite database {path}"):
            conn = await open_connection(path)
        store = cls(conn, streaming_lease_seconds=lease)
        try:
            with _errors(f"configuring SQLite database {path}"):
                # busy_timeout first: switching to WAL needs a lock another process may hold
                await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                await _switch_to_wal(conn)
                await conn.execute("PRAGMA foreign_keys = ON")
                await conn.execute("PRAGMA synchronous = NORMAL")
            if migrate:
                await store.migrate()
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self.connection.close()

    # -- plumbing ----------------------------------------------------------------------------------
    def _open_conn(self) -> aiosqlite.Connection:
        if self._closed:
            raise DatabaseUnavailableError("this SqliteStore is closed")
        return self.connection

    def _current(self) -> SqliteTransaction | None:
        return current(self, SqliteTransaction)

    def _joins(self, tx: Any) -> bool:
        """True when the write runs inside an already open transaction (and must not take the lock)."""
        joined = joins(self, tx, SqliteTransaction)
        if joined is not None:
            return joined
        if tx is self.connection:
            return bool(self.connection.in_transaction) or self._current() is not None
        raise ConfigError(
            "tx= must be what this SqliteStore's transaction() yields or its own aiosqlite connection, "
            f"got {type(tx).__name__}"
        )

    @asynccontextmanager
    async def _reading(self, what: str) -> AsyncIterator[aiosqlite.Connection]:
        conn = self._open_conn()
        try:
            if self._current() is not None:
                with _errors(what):
                    yield conn
                return
            async with self._lock:
                with _errors(what):
                    yield conn
        except _MissingSchema as exc:  # asked once the lock is free: the diagnosis reads the database
            raise await self.schema_error(what, str(exc)) from exc.__cause__

    @asynccontextmanager
    async def _writing(self, what: str, tx: Any = None) -> AsyncIterator[aiosqlite.Connection]:
        """One write: its own BEGIN IMMEDIATE transaction, or a savepoint inside the open one, so a
        failed write leaves the database as it was either way."""
        conn = self._open_conn()
        try:
            if self._joins(tx):
                async with self._savepoint(conn, what):
                    yield conn
                return
            async with self._lock, self._immediate(conn, what):
                yield conn
        except _MissingSchema as exc:
            raise await self.schema_error(what, str(exc)) from exc.__cause__

    @asynccontextmanager
    async def _savepoint(self, conn: aiosqlite.Connection, what: str) -> AsyncIterator[None]:
        # a name of its own: undoing one that was never made then fails harmlessly, never hits an outer one
        self._savepoints += 1
        name = f"mofa_sp_{self._savepoints}"
        try:
            with _errors(what):
                await conn.execute(f"SAVEPOINT {name}")
                yield
        except BaseException:
            await _cleanup(conn, f"ROLLBACK TO {name}")
            await _cleanup(conn, f"RELEASE {name}")
            raise
        with _errors(what):
            await conn.execute(f"RELEASE {name}")

    @asynccontextmanager
    async def _immediate(self, conn: aiosqlite.Connection, what: str) -> AsyncIterator[None]:
        # IMMEDIATE takes the write lock up front: two writers never both hold read locks and deadlock.
        # BEGIN is inside the try: if this task is cancelled while BEGIN is queued, the ROLLBACK follows it.
        try:
            with _errors(what):
                await conn.execute("BEGIN IMMEDIATE")
                yield
                await conn.execute("COMMIT")
        except BaseException:
            await _cleanup(conn, "ROLLBACK")
            raise

    def transaction(self) -> AbstractAsyncContextManager[SqliteTransaction]:
        return self._transaction()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[SqliteTransaction]:
        current = self._current()
        if current is not None:  # nested: a savepoint inside the open transaction
            async with self._savepoint(current.connection, "nested transaction"):
                yield current
            return
        conn = self._open_conn()
        async with self._lock, self._immediate(conn, "transaction"):
            with entered(SqliteTransaction(self, conn)) as tx:
                yield tx

    # execute_fetchall runs the statement and reads every row in one call on aiosqlite's thread, so a
    # cancelled task never leaves a half-read statement that would block the next COMMIT
    async def _all(self, conn: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(await conn.execute_fetchall(sql, params))

    async def _one(self, conn: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = await self._all(conn, sql, params)
        return rows[0] if rows else None

    async def _change(self, conn: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> int:
        async with conn.execute(sql, params) as cur:
            return int(cur.rowcount)

    def _settle(self, m: Message) -> Message:
        return settle_status(m, self.streaming_lease_seconds)

    # -- schema ------------------------------------------------------------------------------------
    async def migrate(self) -> list[str]:
        from ._migrations import MIGRATIONS_TABLE, load_migrations

        applied: list[str] = []
        with no_schema_diagnosis():  # "run the migrations" is no advice while running them
            for m in load_migrations("sqlite"):
                # one IMMEDIATE transaction each: a second process migrating at once waits, then skips it
                async with self._writing(f"applying migration {m.name}") as conn:
                    await conn.execute(
                        f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} "
                        "(name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
                    )
                    if await self._one(conn, f"SELECT 1 FROM {MIGRATIONS_TABLE} WHERE name = ?", (m.name,)):
                        continue
                    for statement in _statements(m.sql):
                        await conn.execute(statement)
                    await conn.execute(
                        f"INSERT INTO {MIGRATIONS_TABLE} (name, applied_at) VALUES (?, ?)",
                        (m.name, _ts(utc_now())),
                    )
                    applied.append(m.name)
        return applied

    async def check_schema(self) -> list[str]:
        from ._migrations import SQLITE_COLUMNS_SQL, SQLITE_INDEXES_SQL, schema_problems, shape_of

        async with self._reading("checking the schema") as conn:
            columns = await self._all(conn, SQLITE_COLUMNS_SQL)
            indexes = await self._all(conn, SQLITE_INDEXES_SQL)
        return schema_problems(shape_of(columns, [r[0] for r in indexes]))

    async def migration_status(self) -> list[tuple[str, datetime | None]]:
        from ._migrations import MIGRATIONS_TABLE, load_migrations

        async with self._reading("reading migration status") as conn:
            exists = await self._one(
                conn, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (MIGRATIONS_TABLE,)
            )
            done = (
                dict(await self._all(conn, f"SELECT name, applied_at FROM {MIGRATIONS_TABLE}"))
                if exists
                else {}
            )
        return [(m.name, _dt(done[m.name]) if m.name in done else None) for m in load_migrations("sqlite")]

    # -- messages ----------------------------------------------------------------------------------
    async def _insert_message(self, conn: aiosqlite.Connection, m: Message) -> Message:
        row = await self._one(
            conn,
            "UPDATE entity_session SET last_seq = last_seq + 1, update_time = ? "
            "WHERE id = ? AND tenant_id = ? RETURNING last_seq",
            (_ts(utc_now()), str(m.session_id), str(m.tenant_id)),
        )
        if row is None:
            raise NotFoundError(f"cannot save message: session {m.session_id} does not exist for this tenant")
        seq = int(row[0])
        await conn.execute(
            f"INSERT INTO entity_message ({_MSG}) VALUES ({_marks(_MSG)})",
            (
                str(m.id), str(m.session_id), str(m.tenant_id), str(m.user_id), _id(m.agent_id), seq, m.role,
                m.content, m.status, json.dumps(m.metadata, ensure_ascii=False), 0, _id(m.parent_message_id),
                _ts(m.create_time), _ts(m.update_time),
            ),
        )  # fmt: skip
        return self._settle(m.model_copy(update={"seq": seq}))

    async def save_message(self, message: Message, *, tx: Any = None) -> Message:
        async with self._writing("saving a message", tx) as conn:
            return await self._insert_message(conn, message)

    async def save_messages(self, messages: Sequence[Message], *, tx: Any = None) -> list[Message]:
        async with self._writing("saving messages", tx) as conn:
            return [await self._insert_message(conn, m) for m in messages]

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
        metadata = check_message_update(content, status, metadata)
        sets: list[str] = ["update_time = ?"]
        params: list[Any] = [_ts(utc_now())]
        if not isinstance(content, Unset):
            sets.append("content = ?")
            params.append(content)
        if not isinstance(status, Unset):
            sets.append("status = ?")
            params.append(status)
        if not isinstance(metadata, Unset):
            sets.append("metadata = ?")
            params.append(json.dumps(metadata, ensure_ascii=False))
        async with self._writing(f"updating message {message_id}", tx) as conn:
            n = await self._change(
                conn,
                f"UPDATE entity_message SET {', '.join(sets)} WHERE id = ? AND tenant_id = ?",
                (*params, str(message_id), str(tenant_id)),
            )
        if n == 0:
            raise NotFoundError(f"cannot update message {message_id}: not found for this tenant")

    async def get_message(self, tenant_id: uuid.UUID, message_id: uuid.UUID) -> Message | None:
        async with self._reading("reading a message") as conn:
            row = await self._one(
                conn, f"SELECT {_MSG} FROM entity_message WHERE id = ? AND tenant_id = ?",
                (str(message_id), str(tenant_id)),
            )  # fmt: skip
        return self._settle(_message(row)) if row else None

    async def get_session_messages(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> list[Message]:
        async with self._reading("reading session messages") as conn:
            rows = await self._all(
                conn,
                f"SELECT {_MSG} FROM entity_message WHERE session_id = ? AND tenant_id = ? ORDER BY seq",
                (str(session_id), str(tenant_id)),
            )  # fmt: skip
        return [self._settle(_message(r)) for r in rows]

    async def get_session_messages_paginated(
        self, tenant_id: uuid.UUID, session_id: uuid.UUID, offset: int, limit: int
    ) -> list[Message]:
        check_page(offset, limit)
        async with self._reading("reading session messages") as conn:
            rows = await self._all(
                conn,
                f"SELECT {_MSG} FROM entity_message WHERE session_id = ? AND tenant_id = ? "
                "ORDER BY seq LIMIT ? OFFSET ?",
                (str(session_id), str(tenant_id), limit, offset),
            )
        return [self._settle(_message(r)) for r in rows]

    async def get_last_messages(self, tenant_id: uuid.UUID, session_id: uuid.UUID, k: int) -> list[Message]:
        async with self._reading("reading the last messages") as conn:
            rows = await self._all(
                conn,
                f"SELECT {_MSG} FROM entity_message WHERE session_id = ? AND tenant_id = ? "
                "ORDER BY seq DESC LIMIT ?",
                (str(session_id), str(tenant_id), k),
            )
        return [self._settle(_message(r)) for r in reversed(rows)]

    async def delete_message(self, tenant_id: uuid.UUID, message_id: uuid.UUID, *, tx: Any = None) -> bool:
        async with self._writing(f"deleting message {message_id}", tx) as conn:
            n = await self._change(
                conn,
                "DELETE FROM entity_message WHERE id = ? AND tenant_id = ?",
                (str(message_id), str(tenant_id)),
            )
        return n > 0

    async def delete_session_messages(
        self, tenant_id: uuid.UUID, session_id: uuid.UUID, *, tx: Any = None
    ) -> int:
        async with self._writing(f"deleting the messages of session {session_id}", tx) as conn:
            return await self._change(
                conn, "DELETE FROM entity_message WHERE session_id = ? AND tenant_id = ?",
                (str(session_id), str(tenant_id)),
            )  # fmt: skip

    async def count_session_messages(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> int:
        async with self._reading("counting session messages") as conn:
            row = await self._one(
                conn, "SELECT COUNT(*) FROM entity_message WHERE session_id = ? AND tenant_id = ?",
                (str(session_id), str(tenant_id)),
            )  # fmt: skip
        return int(row[0])

    async def mark_interrupted(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> int:
        now = utc_now()
        cutoff = now - timedelta(seconds=self.streaming_lease_seconds)
        async with self._writing(f"marking interrupted replies of session {session_id}") as conn:
            return await self._change(
                conn,
                "UPDATE entity_message SET status = 'interrupted', update_time = ? WHERE session_id = ? "
                "AND tenant_id = ? AND status = 'streaming' AND update_time < ?",
                (_ts(now), str(session_id), str(tenant_id), _ts(cutoff)),
            )

    # -- sessions ----------------------------------------------------------------------------------
    async def create_session(self, session: Session, *, tx: Any = None) -> Session:
        async with self._writing(f"creating session {session.id}", tx) as conn:
            row = await self._one(
                conn, f"SELECT {_SESSION} FROM entity_session WHERE id = ?", (str(session.id),)
            )
            if row is not None:
                existing = _session(row)
                if existing.tenant_id != session.tenant_id or existing.user_id != session.user_id:
                    raise TenantMismatchError(f"session {session.id} belongs to another tenant or user")
                return existing
            await conn.execute(
                f"INSERT INTO entity_session ({_SESSION}) VALUES ({_marks(_SESSION)})",
                (
                    str(session.id), str(session.tenant_id), str(session.user_id), _id(session.agent_id),
                    session.title, json.dumps(session.metadata, ensure_ascii=False),
                    _ts(session.create_time), _ts(session.update_time),
                ),
            )  # fmt: skip
        return session.model_copy(deep=True)

    async def get_session(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> Session | None:
        async with self._reading("reading a session") as conn:
            row = await self._one(
                conn, f"SELECT {_SESSION} FROM entity_session WHERE id = ? AND tenant_id = ?",
                (str(session_id), str(tenant_id)),
            )  # fmt: skip
        return _session(row) if row else None

    async def get_user_sessions(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, *, offset: int = 0, limit: int = 50
    ) -> list[Session]:
        check_page(offset, limit)
        async with self._reading("listing sessions") as conn:
            rows = await self._all(
                conn,
                f"SELECT {_SESSION} FROM entity_session WHERE tenant_id = ? AND user_id = ? "
                "ORDER BY update_time DESC, id DESC LIMIT ? OFFSET ?",
                (str(tenant_id), str(user_id), limit, offset),
            )
        return [_session(r) for r in rows]

    async def update_session(
        self,
        tenant_id: uuid.UUID,
        session_id: uuid.UUID,
        *,
        title: str | Unset | None = UNSET,
        metadata: dict[str, Any] | Unset = UNSET,
        tx: Any = None,
    ) -> Session:
        metadata = check_session_update(tenant_id, title, metadata)
        sets: list[str] = ["update_time = ?"]
        params: list[Any] = [_ts(utc_now())]
        if not isinstance(title, Unset):
            sets.append("title = ?")
            params.append(title)
        if not isinstance(metadata, Unset):
            sets.append("metadata = ?")
            params.append(json.dumps(metadata, ensure_ascii=False))
        async with self._writing(f"updating session {session_id}", tx) as conn:
            row = await self._one(
                conn,
                f"UPDATE entity_session SET {', '.join(sets)} WHERE id = ? AND tenant_id = ? "
                f"RETURNING {_SESSION}",
                (*params, str(session_id), str(tenant_id)),
            )
        if row is None:
            raise NotFoundError(f"cannot update session {session_id}: not found for this tenant")
        return _session(row)

    async def delete_session(self, tenant_id: uuid.UUID, session_id: uuid.UUID, *, tx: Any = None) -> bool:
        # messages and api calls go with it (ON DELETE CASCADE; foreign_keys is on for every connection)
        async with self._writing(f"deleting session {session_id}", tx) as conn:
            n = await self._change(
                conn,
                "DELETE FROM entity_session WHERE id = ? AND tenant_id = ?",
                (str(session_id), str(tenant_id)),
            )
        return n > 0

    # -- api calls ---------------------------------------------------------------------------------
    async def _insert_call(self, conn: aiosqlite.Connection, c: LLMApiCall) -> LLMApiCall:
        # INSERT … SELECT: the row goes in only when the session exists for the call's tenant
        n = await self._change(
            conn,
            f"INSERT INTO entity_api_call ({_CALL}) SELECT {_marks(_CALL)} "
            "WHERE EXISTS (SELECT 1 FROM entity_session WHERE id = ? AND tenant_id = ?)",
            (*_call_row(c), str(c.session_id), str(c.tenant_id)),
        )
        if n == 0:
            raise NotFoundError(
                f"cannot save api call: session {c.session_id} does not exist for this tenant"
            )
        return c

    async def save_api_call(self, call: LLMApiCall, *, tx: Any = None) -> LLMApiCall:
        async with self._writing("saving an api call", tx) as conn:
            return await self._insert_call(conn, call)

    async def save_api_calls(self, calls: Sequence[LLMApiCall], *, tx: Any = None) -> list[LLMApiCall]:
        async with self._writing("saving api calls", tx) as conn:
            return [await self._insert_call(conn, c) for c in calls]

    async def get_api_call(self, tenant_id: uuid.UUID, call_id: uuid.UUID) -> LLMApiCall | None:
        async with self._reading("reading an api call") as conn:
            row = await self._one(
                conn, f"SELECT {_CALL} FROM entity_api_call WHERE id = ? AND tenant_id = ?",
                (str(call_id), str(tenant_id)),
            )  # fmt: skip
        return _call(row) if row else None

    async def query_api_calls(self, query: QueryFilter) -> list[LLMApiCall]:
        where, params = _api_filter(query)
        async with self._reading("querying api calls") as conn:
            rows = await self._all(
                conn,
                f"SELECT {_CALL} FROM entity_api_call WHERE {where} "
                "ORDER BY create_time DESC, id DESC LIMIT ? OFFSET ?",
                (*params, query.limit, query.offset),
            )
        return [_call(r) for r in rows]

    async def get_statistics(self, query: QueryFilter) -> UsageStatistics:
        where, params = _api_filter(query)
        async with self._reading("computing usage statistics") as conn:
            groups = await self._all(
                conn,
                "SELECT status, COUNT(*), TOTAL(prompt_tokens), TOTAL(completion_tokens), "
                f"TOTAL(total_tokens), TOTAL(price) FROM entity_api_call WHERE {where} GROUP BY status",
                params,
            )
            avgs = await self._one(
                conn,
                f"SELECT AVG(latency_ms), AVG(tokens_per_second) FROM entity_api_call WHERE {where}",
                params,
            )
            # percentiles in Python over just two columns, interpolated as PostgreSQL's percentile_cont does
            times = await self._all(
                conn,
                f"SELECT latency_ms, time_to_first_token_ms FROM entity_api_call WHERE {where} "
                "AND (latency_ms IS NOT NULL OR time_to_first_token_ms IS NOT NULL)",
                params,
            )
        latencies = [float(t[0]) for t in times if t[0] is not None]
        ttfts = [float(t[1]) for t in times if t[1] is not None]
        return UsageStatistics(
            total_calls=sum(int(g[1]) for g in groups),
            calls_by_status={g[0]: int(g[1]) for g in groups},
            prompt_tokens=sum(int(g[2]) for g in groups),
            completion_tokens=sum(int(g[3]) for g in groups),
            total_tokens=sum(int(g[4]) for g in groups),
            total_price=float(sum(g[5] for g in groups)),
            avg_latency_ms=avgs[0],
            p50_latency_ms=percentile_cont(latencies, 0.5),
            p95_latency_ms=percentile_cont(latencies, 0.95),
            p50_time_to_first_token_ms=percentile_cont(ttfts, 0.5),
            p95_time_to_first_token_ms=percentile_cont(ttfts, 0.95),
            avg_tokens_per_second=avgs[1],
        )

    async def cleanup_old_records(self, before: datetime, *, tenant_id: uuid.UUID | None = None) -> int:
        sql, params = "DELETE FROM entity_api_call WHERE create_time < ?", [_ts(before)]
        if tenant_id is not None:
            sql += " AND tenant_id = ?"
            params.append(str(tenant_id))
        async with self._writing("deleting old api call records") as conn:
            return await self._change(conn, sql, params)

    # -- providers ---------------------------------------------------------------------------------
    async def create_provider(self, provider: Provider) -> Provider:
        p = provider
        key = encrypt_key(p.api_key.get_secret_value() if p.api_key is not None else None)
        async with self._writing(f"creating provider {p.provider_name!r}") as conn:
            await conn.execute(
                f"INSERT INTO entity_provider ({_PROVIDER}) VALUES ({_marks(_PROVIDER)})",
                (
                    str(p.id), str(p.tenant_id), p.provider_name, p.provider_type, p.api_base, key,
                    int(p.enabled), _ts(p.create_time), _ts(p.update_time),
                ),
            )  # fmt: skip
        return p.model_copy(deep=True)

    async def update_provider(self, provider: Provider) -> Provider:
        p = provider
        key = encrypt_key(p.api_key.get_secret_value() if p.api_key is not None else None)
        async with self._writing(f"updating provider {p.provider_name!r}") as conn:
            row = await self._one(
                conn,
                "UPDATE entity_provider SET provider_name = ?, provider_type = ?, api_base = ?, api_key = ?, "
                f"enabled = ?, update_time = ? WHERE id = ? AND tenant_id = ? RETURNING {_PROVIDER}",
                (
                    p.provider_name, p.provider_type, p.api_base, key, int(p.enabled), _ts(utc_now()),
                    str(p.id), str(p.tenant_id),
                ),
            )  # fmt: skip
        if row is None:
            raise NotFoundError(f"cannot update provider {p.id}: not found for this tenant")
        return _provider(row)

    async def delete_provider(self, tenant_id: uuid.UUID, provider_id: uuid.UUID) -> bool:
        async with self._writing(f"deleting provider {provider_id}") as conn:
            in_use = await self._one(
                conn,
                "SELECT EXISTS (SELECT 1 FROM entity_agent WHERE provider_id = p.id) FROM entity_provider p "
                "WHERE p.id = ? AND p.tenant_id = ?",
                (str(provider_id), str(tenant_id)),
            )
            if in_use is None:
                return False
            if in_use[0]:
                raise ConflictError(f"cannot delete provider {provider_id}: an agent still uses it")
            n = await self._change(
                conn,
                "DELETE FROM entity_provider WHERE id = ? AND tenant_id = ?",
                (str(provider_id), str(tenant_id)),
            )
        return n > 0

    async def _providers(self, where: str, params: Sequence[Any]) -> list[Provider]:
        async with self._reading("reading providers") as conn:
            rows = await self._all(
                conn, f"SELECT {_PROVIDER} FROM entity_provider WHERE {where} ORDER BY provider_name", params
            )
        return [_provider(r) for r in rows]

    async def get_provider(self, tenant_id: uuid.UUID, provider_id: uuid.UUID) -> Provider | None:
        found = await self._providers("id = ? AND tenant_id = ?", (str(provider_id), str(tenant_id)))
        return found[0] if found else None

    async def get_provider_by_name(self, tenant_id: uuid.UUID, name: str) -> Provider | None:
        found = await self._providers("tenant_id = ? AND provider_name = ?", (str(tenant_id), name))
        return found[0] if found else None

    async def list_providers(self, tenant_id: uuid.UUID) -> list[Provider]:
        return await self._providers("tenant_id = ?", (str(tenant_id),))

    async def get_enabled_providers(self, tenant_id: uuid.UUID) -> list[Provider]:
        return await self._providers("tenant_id = ? AND enabled = 1", (str(tenant_id),))

    # -- agents ------------------------------------------------------------------------------------
    async def _check_provider(self, conn: aiosqlite.Connection, agent: Agent, action: str) -> None:
        found = await self._one(
            conn, "SELECT 1 FROM entity_provider WHERE id = ? AND tenant_id = ?",
            (str(agent.provider_id), str(agent.tenant_id)),
        )  # fmt: skip
        if not found:
            raise NotFoundError(
                f"cannot {action} agent: provider {agent.provider_id} not found for this tenant"
            )

    async def create_agent(self, agent: Agent) -> Agent:
        a = agent
        async with self._writing(f"creating agent {a.agent_code!r}") as conn:
            await self._check_provider(conn, a, "create")
            await conn.execute(
                f"INSERT INTO entity_agent ({_AGENT}) VALUES ({_marks(_AGENT)})",
                (str(a.id), str(a.tenant_id), *_agent_values(a), _ts(a.create_time), _ts(a.update_time)),
            )
        return a.model_copy(deep=True)

    async def update_agent(self, agent: Agent) -> Agent:
        a = agent
        async with self._writing(f"updating agent {a.agent_code!r}") as conn:
            await self._check_provider(conn, a, "update")
            row = await self._one(
                conn,
                "UPDATE entity_agent SET agent_code = ?, agent_name = ?, agent_order = ?, agent_status = ?, "
                "context_limit = ?, custom_params = ?, max_completion_tokens = ?, model_name = ?, "
                "provider_id = ?, response_format = ?, system_prompt = ?, temperature = ?, stream = ?, "
                "thinking = ?, "
                f"update_time = ? WHERE id = ? AND tenant_id = ? RETURNING {_AGENT}",
                (*_agent_values(a), _ts(utc_now()), str(a.id), str(a.tenant_id)),
            )
        if row is None:
            raise NotFoundError(f"cannot update agent {a.id}: not found for this tenant")
        return _agent(row)

    async def delete_agent(self, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> bool:
        async with self._writing(f"deleting agent {agent_id}") as conn:
            n = await self._change(
                conn,
                "DELETE FROM entity_agent WHERE id = ? AND tenant_id = ?",
                (str(agent_id), str(tenant_id)),
            )
        return n > 0

    async def _agents(self, where: str, params: Sequence[Any]) -> list[Agent]:
        async with self._reading("reading agents") as conn:
            rows = await self._all(
                conn,
                f"SELECT {_AGENT} FROM entity_agent WHERE {where} ORDER BY agent_order, agent_code",
                params,
            )
        return [_agent(r) for r in rows]

    async def get_agent(self, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> Agent | None:
        found = await self._agents("id = ? AND tenant_id = ?", (str(agent_id), str(tenant_id)))
        return found[0] if found else None

    async def get_agent_by_code_and_tenant(self, tenant_id: uuid.UUID, code: str) -> Agent | None:
        found = await self._agents("tenant_id = ? AND agent_code = ?", (str(tenant_id), code))
        return found[0] if found else None

    async def list_agents(self, tenant_id: uuid.UUID) -> list[Agent]:
        return await self._agents("tenant_id = ?", (str(tenant_id),))

    async def get_active_agents(self, tenant_id: uuid.UUID) -> list[Agent]:
        return await self._agents("tenant_id = ? AND agent_status = 1", (str(tenant_id),))

    async def find_sessions_by_id(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, fragment: str, *, limit: int = 10
    ) -> list[Session]:
        frag = check_id_fragment(fragment)
        check_page(0, limit)
        async with self._reading("finding sessions by id") as conn:
            rows = await self._all(
                conn,
                f"SELECT {_SESSION} FROM entity_session WHERE tenant_id = ? AND user_id = ? "
                "AND (id LIKE ? OR id LIKE ?) ORDER BY update_time DESC, id DESC LIMIT ?",
                (str(tenant_id), str(user_id), frag + "%", "%" + frag, limit),
            )
        return [_session(r) for r in rows]

    async def search_messages(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, text: str, *, limit: int = 20
    ) -> list[Message]:
        # each word quoted: FTS5 syntax in the text is not interpreted, and the words are AND-ed
        query = " ".join('"' + w.replace('"', '""') + '"' for w in search_words(text))
        check_page(0, limit)
        cols = ", ".join(f"m.{c.strip()}" for c in _MSG.split(","))
        async with self._reading("searching messages") as conn:
            rows = await self._all(
                conn,
                f"SELECT {cols} FROM entity_message_fts f JOIN entity_message m ON m.rowid = f.rowid "
                "JOIN entity_session s ON s.id = m.session_id AND s.tenant_id = m.tenant_id "
                "WHERE entity_message_fts MATCH ? AND m.tenant_id = ? AND s.user_id = ? "
                "ORDER BY m.create_time DESC, m.id DESC LIMIT ?",
                (query, str(tenant_id), str(user_id), limit),
            )
        return [self._settle(_message(r)) for r in rows]


    # -- api keys --------------------------------------------------------------------------------------
    async def create_api_key(self, key: ApiKey) -> ApiKey:
        try:
            async with self._writing(f"creating api key {key.id}") as conn:
                await self._change(
                    conn,
                    f"INSERT INTO entity_api_key ({_API_KEY}) VALUES ({_marks(_API_KEY)})",
                    _api_key_row(key),
                )
        except ConflictError as exc:
            raise ConflictError(f"cannot create api key {key.id}: the id or the key exists already") from exc
        return key.model_copy(deep=True)

    async def _api_keys(self, where: str, params: Sequence[Any]) -> list[ApiKey]:
        async with self._reading("reading api keys") as conn:
            rows = await self._all(
                conn, f"SELECT {_API_KEY} FROM entity_api_key WHERE {where} ORDER BY create_time DESC, id DESC", params
            )
        return [_api_key(r) for r in rows]

    async def get_api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        found = await self._api_keys("key_hash = ?", (key_hash,))
        return found[0] if found else None

    async def list_api_keys(self, tenant_id: uuid.UUID) -> list[ApiKey]:
        return await self._api_keys("tenant_id = ?", (str(tenant_id),))

    async def revoke_api_key(self, tenant_id: uuid.UUID, key_id: uuid.UUID) -> bool:
        async with self._writing(f"revoking api key {key_id}") as conn:
            n = await self._change(
                conn,
                "UPDATE entity_api_key SET revoke_time = ? WHERE id = ? AND tenant_id = ? AND revoke_time IS NULL",
                (_ts(utc_now()), str(key_id), str(tenant_id)),
            )
        return n > 0

    async def touch_api_key(self, tenant_id: uuid.UUID, key_id: uuid.UUID, used_at: datetime) -> None:
        async with self._writing(f"recording the use of api key {key_id}") as conn:
            await self._change(
                conn,
                "UPDATE entity_api_key SET last_used_time = ? WHERE id = ? AND tenant_id = ?",
                (_ts(used_at), str(key_id), str(tenant_id)),
            )


_API_KEY = "id, tenant_id, user_id, name, key_hash, key_hint, create_time, last_used_time, revoke_time"


def _api_key_row(k: ApiKey) -> tuple[Any, ...]:
    return (
        str(k.id), str(k.tenant_id), str(k.user_id), k.name, k.key_hash, k.key_hint, _ts(k.create_time),
        None if k.last_used_time is None else _ts(k.last_used_time),
        None if k.revoke_time is None else _ts(k.revoke_time),
    )  # fmt: skip


def _api_key(r: Sequence[Any]) -> ApiKey:
    return ApiKey(
        id=uuid.UUID(r[0]), tenant_id=uuid.UUID(r[1]), user_id=uuid.UUID(r[2]), name=r[3], key_hash=r[4],
        key_hint=r[5], create_time=_dt(r[6]), last_used_time=None if r[7] is None else _dt(r[7]),
        revoke_time=None if r[8] is None else _dt(r[8]),
    )  # fmt: skip

def _statements(script: str) -> Iterator[str]:
    """Split a migration script into statements (``executescript`` would commit our transaction first)."""
    start = 0
    for i, ch in enumerate(script):
        if ch == ";" and sqlite3.complete_statement(script[start : i + 1]):
            statement = script[start : i + 1].strip()
            start = i + 1
            if statement:
                yield statement
    rest = script[start:]
    if rest.strip() and sqlite3.complete_statement(rest + ";"):
        yield rest.strip()
