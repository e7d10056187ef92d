"""InMemoryStore: the SQL store on a private SQLite ``:memory:`` database, for tests and throw-away sessions.

It is :class:`~._sqlite.SqliteStore` itself, so it keeps every rule the database stores keep (tenant scoping,
uniqueness, seq per session, cascades, full-text search) by running the same statements. A ``:memory:``
database lives in one connection: each store opens its own (so two stores never share data), on first use,
migrated; the constructor stays synchronous. Entities it returns are fresh objects read from the database:
mutating one never changes what is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref

import aiosqlite

from ._sqlite import SqliteStore, SqliteTransaction

__all__ = ["InMemoryStore", "MemoryTransaction"]

#: how long a store dropped without ``close()`` waits for its connection's thread to close the database
_RELEASE_WAIT_SECONDS = 2.0

#: what ``InMemoryStore.transaction()`` yields (the SQLite store's transaction: it is that store)
MemoryTransaction = SqliteTransaction


class InMemoryStore(SqliteStore):
    """Everything in process memory; gone when the store is closed or the process ends."""

    dialect = "memory"

    def __init__(self, *, streaming_lease_seconds: float = 5.0) -> None:
        # no connection yet: it is opened (and migrated) by the first operation, inside a running loop
        self.connection: aiosqlite.Connection = None  # type: ignore[assignment]
        super().__init__(self.connection, streaming_lease_seconds=streaming_lease_seconds)
        self._opening = asyncio.Lock()
        self._release: weakref.finalize[[aiosqlite.Connection], None]

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self.connection is not None else "not opened yet"
        return f"<InMemoryStore {state}>"

    async def _open_conn(self) -> aiosqlite.Connection:
        if self.connection is None and not self._closed:
            async with self._opening:
                if self.connection is None and not self._closed:
                    # migrated by a store of its own, so that migrating cannot come back here; this store
                    # then takes its connection (the other store is dropped, never closed)
                    opened = await SqliteStore.in_memory(streaming_lease_seconds=self.streaming_lease_seconds)
                    self.connection = opened.connection
                    # dropping the store without close() is fine (its data lived only in it): the connection
                    # then goes quietly, instead of with aiosqlite's "deleted before being closed" warning
                    self._release = weakref.finalize(self, _release, self.connection)
                    self._release.atexit = False  # at exit, _sqlite_thread stops every connection
        return await super()._open_conn()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.connection is not None:
            self._release.detach()
            await self.connection.close()


def _release(conn: aiosqlite.Connection) -> None:
    """Close the connection of a store that was dropped without ``close()``, and wait for its thread."""
    with contextlib.suppress(Exception):
        conn.stop()
    thread = getattr(conn, "_thread", None)
    if isinstance(thread, threading.Thread) and thread.is_alive() and thread is not threading.current_thread():
        thread.join(_RELEASE_WAIT_SECONDS)
