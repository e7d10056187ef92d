"""SqliteStore: the store contract on one SQLite file through aiosqlite (the zero-set-up default).

One store holds one connection. An asyncio lock serialises its operations, so any number of tasks may
share it; writes open ``BEGIN IMMEDIATE`` transactions and the connection waits ``busy_timeout`` for the
file's write lock, so several stores (or processes) on one file take turns instead of failing.

The operations are :class:`~._sql.SqlStore`'s; values are stored as :class:`~._dialect.SqliteDialect` says.
"""

from __future__ import annotations

import asyncio
import functools
import operator
import re
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager, suppress
from pathlib import Path
from typing import Any

import aiosqlite

from ..errors import (
    ConfigError,
    ConflictError,
    DatabaseUnavailableError,
    PersistenceError,
    ValidationError,
)
from ._dialect import SqliteDialect
from ._local_tx import LocalTransaction, current, entered, joins
from ._sql import Doing, KeyConflict, MigrationStep, Row, SqlStore
from ._sqlite_thread import open_connection
from ._store import Transaction

__all__ = ["SqliteStore", "SqliteTransaction"]

BUSY_TIMEOUT_MS = 30_000


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
def _errors(what: Doing) -> Iterator[None]:
    """SQLite's exceptions as mofa_sdk errors that say what was being done."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        text = str(exc)
        if "UNIQUE" in text or "PRIMARY KEY" in text:
            raise KeyConflict(f"{what}: a row with the same key already exists ({text})") from exc
        if "FOREIGN KEY" in text:
            raise KeyConflict(f"{what}: a row it refers to is missing, or rows still refer to it") from exc
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


class SqliteStore(SqlStore):
    """The store on an SQLite file. Make one with ``await SqliteStore.connect(url)`` or ``in_memory()``.

    ``tx=`` accepts what ``transaction()`` yields, or this store's own ``aiosqlite.Connection``
    (``store.connection``) when the caller opened a transaction on it: the write then joins that
    transaction. Inside ``async with store.transaction()``, reads and writes from the same task (or tasks
    it starts) without ``tx=`` join it too: there is one connection, so they cannot commit on their own.
    """

    dialect = "sqlite"
    _dialect = SqliteDialect()

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
    async def _open_conn(self) -> aiosqlite.Connection:
        """The connection to use; a subclass may open it on first use (the in-memory store does)."""
        if self._closed:
            raise DatabaseUnavailableError(f"this {type(self).__name__} is closed")
        return self.connection

    def _current(self) -> SqliteTransaction | None:
        return current(self, SqliteTransaction)

    def _joins(self, tx: Transaction | None) -> bool:
        """True when the write runs inside an already open transaction (and must not take the lock)."""
        joined = joins(self, tx, SqliteTransaction)
        if joined is not None:
            return joined
        if tx is self.connection:
            return bool(self.connection.in_transaction) or self._current() is not None
        raise ConfigError(
            f"tx= must be what this {type(self).__name__}'s transaction() yields or its own aiosqlite "
            f"connection, got {type(tx).__name__}"
        )

    @asynccontextmanager
    async def _reading(self, what: Doing, tenant: uuid.UUID | None) -> AsyncIterator[aiosqlite.Connection]:
        conn = await self._open_conn()
        try:
            if self._current() is not None:
                with _errors(what):
                    yield conn
                return
            async with self._lock:
                with _errors(what):
                    yield conn
        except _MissingSchema as exc:  # asked once the lock is free: the diagnosis reads the database
            raise await self.schema_error(str(what), str(exc)) from exc.__cause__

    @asynccontextmanager
    async def _writing(
        self, what: Doing, tx: Transaction | None, tenant: uuid.UUID | None, *, atomic: bool = False
    ) -> AsyncIterator[aiosqlite.Connection]:
        """Every write is atomic here, so a failed write leaves the database as it was: its own BEGIN
        IMMEDIATE transaction, or inside the open one a savepoint around an ``atomic`` write (several
        statements). A single statement needs none: SQLite backs out a failed statement and keeps the
        transaction, and the two savepoint statements are two more trips to the driver's thread."""
        conn = await self._open_conn()
        try:
            if self._joins(tx):
                if atomic:
                    async with self._savepoint(conn, what):
                        yield conn
                else:
                    with _errors(what):
                        yield conn
                return
            async with self._lock, self._immediate(conn, what):
                yield conn
        except _MissingSchema as exc:
            raise await self.schema_error(str(what), str(exc)) from exc.__cause__

    @asynccontextmanager
    async def _savepoint(self, conn: aiosqlite.Connection, what: Doing) -> AsyncIterator[None]:
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
    async def _immediate(self, conn: aiosqlite.Connection, what: Doing) -> AsyncIterator[None]:
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
        conn = await self._open_conn()
        async with self._lock, self._immediate(conn, "transaction"):
            with entered(SqliteTransaction(self, conn)) as tx:
                yield tx

    # execute_fetchall runs the statement and reads every row in one call on aiosqlite's thread, so a
    # cancelled task never leaves a half-read statement that would block the next COMMIT
    async def _fetch(self, conn: aiosqlite.Connection, sql: str, params: Mapping[str, Any]) -> list[Row]:
        text, pick = _positional(sql)
        return list(await conn.execute_fetchall(text, pick(params)))

    async def _execute(self, conn: aiosqlite.Connection, sql: str, params: Mapping[str, Any]) -> int:
        text, pick = _positional(sql)
        async with conn.execute(text, pick(params)) as cur:
            return int(cur.rowcount)

    async def _execute_many(
        self, conn: aiosqlite.Connection, sql: str, params: Sequence[Mapping[str, Any]]
    ) -> None:
        text, pick = _positional(sql)
        await conn.executemany(text, [pick(p) for p in params])

    @asynccontextmanager
    async def _migrating(self) -> AsyncIterator[MigrationStep]:
        # one IMMEDIATE transaction per migration: the file's write lock is the migration lock
        yield lambda doing: self._writing(doing, None, None)

    async def _run_script(self, conn: aiosqlite.Connection, script: str) -> None:
        for statement in _statements(script):
            await conn.execute(statement)


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


# a quoted string (left as it is) or a :name placeholder
_PLACEHOLDER = re.compile(r"'(?:[^']|'')*'|:([A-Za-z_]\w*)")
Pick = Callable[[Mapping[str, Any]], tuple[Any, ...]]


@functools.lru_cache(maxsize=1024)
def _positional(sql: str) -> tuple[str, Pick]:
    """``sql`` with ``?`` for each ``:name``, and what picks the values in that order. sqlite3 binds a dict
    by asking SQLite each placeholder's name and building a string of it to look up, on every execution;
    a tuple is bound as it is, and the names are read here once per statement."""
    names: list[str] = []

    def mark(m: re.Match[str]) -> str:
        if m.group(1) is None:
            return m.group(0)
        names.append(m.group(1))
        return "?"

    text = _PLACEHOLDER.sub(mark, sql)
    if not names:
        return text, lambda params: ()
    get = operator.itemgetter(*names)
    return text, (lambda params: (get(params),)) if len(names) == 1 else get
