"""aiosqlite connections that never keep the interpreter from exiting.

aiosqlite runs each connection on a non-daemon worker thread that waits for work until the connection is
closed, so a script that forgets ``aclose()`` (the seed's own example does) would hang at exit while
``threading`` joins that thread. Ours are daemons, and an exit hook still stops them in order, so SQLite
closes its file properly (committed data is durable either way: every write is its own transaction).
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import weakref

import aiosqlite

__all__ = ["open_connection"]

#: how long the exit hook waits for a connection's thread to finish what it was given
_EXIT_WAIT_SECONDS = 2.0

_open: weakref.WeakSet[aiosqlite.Connection] = weakref.WeakSet()


def _worker(conn: aiosqlite.Connection) -> threading.Thread | None:
    thread = getattr(conn, "_thread", None)  # aiosqlite's worker; a version without one needs nothing here
    return thread if isinstance(thread, threading.Thread) else None


def _stop_all() -> None:
    alive = [(conn, thread) for conn in list(_open) if (thread := _worker(conn)) is not None and thread.is_alive()]
    for conn, _ in alive:
        with contextlib.suppress(Exception):
            conn.stop()
    for _, thread in alive:
        thread.join(_EXIT_WAIT_SECONDS)


async def open_connection(path: str) -> aiosqlite.Connection:
    """``aiosqlite.connect(path)`` in autocommit mode, on a daemon thread stopped at interpreter exit."""
    conn = aiosqlite.connect(path, isolation_level=None)
    thread = _worker(conn)
    if thread is not None and not thread.is_alive():
        thread.daemon = True
    if not _open:
        atexit.unregister(_stop_all)
        atexit.register(_stop_all)
    _open.add(conn)
    return await conn
