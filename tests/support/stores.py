"""The store fixtures. ``store`` is each store of the contract in turn: memory, an SQLite file, PostgreSQL, and
PostgreSQL through PgBouncer in transaction pooling mode with server-side prepared statements off.
``local_store`` is each of the two that serialise writes in this process (memory, SQLite). Outside the contract,
``store`` is :func:`each_store` (memory, SQLite, PostgreSQL), ``db_store`` and ``db_url`` the two real databases.
A test directory gets them by re-exporting them from its conftest (tests/conftest.py for the whole suite);
``pg_url`` comes from tests/support/postgres.py."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Literal

import pytest

from mofa_sdk.persistence import InMemoryStore, SqliteStore, Store, connect_store

from .pgbouncer import PgBouncer

__all__ = [
    "StoreKind",
    "contract_pgbouncer",
    "db_store",
    "db_url",
    "each_store",
    "local_store",
    "open_store",
    "sqlite_path",
    "store",
]

StoreKind = Literal["memory", "sqlite", "postgres", "pgbouncer"]


async def open_store(kind: StoreKind, sqlite_path: Path, pg_url: str | None = None) -> Store:
    """A migrated store of ``kind``: a fresh in-memory one, the SQLite file at ``sqlite_path``, or PostgreSQL
    at ``pg_url`` (for "pgbouncer": the pooler's URL; a pooler hands each transaction to any server connection,
    where a statement prepared on another one does not exist, so nothing is prepared)."""
    opened: Store
    if kind == "pgbouncer":
        assert pg_url is not None
        opened = await connect_store(pg_url, prepare_threshold=None)
    elif kind == "memory":
        opened = InMemoryStore()
    elif kind == "sqlite":
        opened = await SqliteStore.connect(f"sqlite:///{sqlite_path}")
    else:
        from mofa_sdk.persistence import PostgresStore

        assert pg_url is not None
        opened = await PostgresStore.connect(pg_url)
    await opened.migrate()
    return opened


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "mofa.db"


@pytest.fixture(scope="session")
def contract_pgbouncer(pg_url: str) -> Iterator[PgBouncer]:
    """PgBouncer in front of the run's PostgreSQL schema (raw-row checks still read ``pg_url`` directly)."""
    bouncer = PgBouncer(pg_url).start()
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture(params=["memory", "sqlite", "postgres", "pgbouncer"])
async def store(request: pytest.FixtureRequest, sqlite_path: Path) -> AsyncIterator[Store]:
    """Each contract test runs once per store."""
    kind: StoreKind = request.param
    url = None
    if kind == "postgres":
        url = str(request.getfixturevalue("pg_url"))
    elif kind == "pgbouncer":
        url = request.getfixturevalue("contract_pgbouncer").url
    opened = await open_store(kind, sqlite_path, url)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture(params=["memory", "sqlite"])
async def local_store(request: pytest.FixtureRequest, sqlite_path: Path) -> AsyncIterator[SqliteStore]:
    """The embedded stores (their own transaction rules: savepoints, ``tx=`` arguments)."""
    opened = InMemoryStore() if request.param == "memory" else await SqliteStore.connect(f"sqlite:///{sqlite_path}")
    try:
        yield opened
    finally:
        await opened.close()



@contextlib.asynccontextmanager
async def _param_store(request: pytest.FixtureRequest, sqlite_path: Path) -> AsyncIterator[Store]:
    """The store the fixture's parameter names, closed afterwards."""
    kind: StoreKind = request.param
    url = str(request.getfixturevalue("pg_url")) if kind == "postgres" else None
    opened = await open_store(kind, sqlite_path, url)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture(name="store", params=["memory", "sqlite", "postgres"])
async def each_store(request: pytest.FixtureRequest, sqlite_path: Path) -> AsyncIterator[Store]:
    """``store`` outside the contract suite: each store the library ships, once per test."""
    async with _param_store(request, sqlite_path) as opened:
        yield opened


@pytest.fixture(params=["sqlite", "postgres"])
async def db_store(request: pytest.FixtureRequest, sqlite_path: Path) -> AsyncIterator[Store]:
    """The two real databases (for concurrency and transaction tests)."""
    async with _param_store(request, sqlite_path) as opened:
        yield opened


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of each real database: a fresh SQLite file, the run's PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mofa.db'}"
    return str(request.getfixturevalue("pg_url"))
