"""Shared fixtures: a fresh PostgreSQL schema per test run, and the three stores behind one fixture."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _base_url() -> str | None:
    return os.environ.get("MOFA_TEST_DATABASE_URL") or None


def need_postgres() -> str:
    url = _base_url()
    if url is None:
        if IN_CI:
            pytest.fail("CI=true but MOFA_TEST_DATABASE_URL is not set: PostgreSQL tests must not skip in CI")
        pytest.skip("no PostgreSQL: set MOFA_TEST_DATABASE_URL or run `make test`")
    return url


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, object, object]:
    """In CI a skip is a failure, whatever raised it: what CI did not run, it did not test."""
    report = yield
    if IN_CI and isinstance(report, pytest.TestReport) and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which must run everything: {report.longrepr}"
    return report


def with_search_path(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    return need_postgres()


@pytest.fixture(scope="session")
def pg_schema_factory(pg_admin_url: str) -> Iterator[object]:
    """Makes fresh schemas (``make()`` -> url whose search_path is that schema); drops them all at the end."""
    import psycopg

    made: list[str] = []

    def make() -> str:
        name = f"mofa_t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        made.append(name)
        return with_search_path(pg_admin_url, name)

    yield make
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        for name in made:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture(scope="session")
def pg_url(pg_schema_factory: object) -> str:
    """One migrated schema shared by the run; tests isolate themselves with fresh tenant ids."""
    return pg_schema_factory()  # type: ignore[operator, no-any-return]


@pytest.fixture
def fresh_pg_url(pg_schema_factory: object) -> str:
    """An empty schema of its own, for migration tests."""
    return pg_schema_factory()  # type: ignore[operator, no-any-return]


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "mofa.db"


async def open_store(kind: str, pg_url: str | None, sqlite_path: Path) -> object:
    from mofa_sdk.persistence import InMemoryStore, PostgresStore, SqliteStore

    store: object
    if kind == "memory":
        store = InMemoryStore()
    elif kind == "sqlite":
        store = await SqliteStore.connect(f"sqlite:///{sqlite_path}")
    else:
        assert pg_url is not None
        store = await PostgresStore.connect(pg_url)
    await store.migrate()
    return store


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, sqlite_path: Path) -> AsyncIterator[object]:
    """Each contract test runs once per store."""
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    s = await open_store(request.param, url, sqlite_path)
    try:
        yield s
    finally:
        await s.close()  # type: ignore[attr-defined]


@pytest.fixture(params=["sqlite", "postgres"])
async def db_store(request: pytest.FixtureRequest, sqlite_path: Path) -> AsyncIterator[object]:
    """The two real databases (for concurrency and transaction tests)."""
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    s = await open_store(request.param, url, sqlite_path)
    try:
        yield s
    finally:
        await s.close()  # type: ignore[attr-defined]


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of each real database: a fresh SQLite file, the run's PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mofa.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
async def fault() -> AsyncIterator[object]:
    """The loopback fault server (tests/llm/fault_server.py)."""
    from tests.llm.fault_server import FaultServer

    async with FaultServer() as srv:
        yield srv


@pytest.fixture
def tenant() -> uuid.UUID:
    return uuid.uuid4()


@pytest.fixture
def user() -> uuid.UUID:
    return uuid.uuid4()


@pytest.fixture(scope="session")
def llama_server() -> Iterator[object]:
    """The real OpenAI-compatible server (``python -m llama_cpp.server``, SmolLM2) behind a recording proxy:
    ``.base_url`` (the proxy's ``/v1``), ``.requests`` (chat request bodies, in order), ``.clear()``."""
    from tests._llama_server import start_llama_server

    server = start_llama_server()
    try:
        yield server
    finally:
        server.stop()
