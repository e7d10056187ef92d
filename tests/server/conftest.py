"""Fixtures of the service tests (the helpers they use live in ``tests.server.support``).

- ``in_app``: the app in this process (``create_app`` over a SQLite file, scripted provider), called through
  an ``httpx2`` ASGI transport: for route tests that need neither several processes nor a kill.
- ``sqlite_served``, ``pg_pair``, ``fault_pair``, ``launcher``: real uvicorn processes on loopback ports, for
  the tests of many processes, killed owners, disconnects mid-stream, ``mofa serve`` and schemathesis.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx2
import pytest

from mofa_sdk.persistence import connect_store
from mofa_sdk.server import ServeConfig
from tests.server.support import (
    ByContent,
    FaultPair,
    InProcess,
    Launcher,
    Served,
    close_openai_clients,
    in_process,
)


@pytest.fixture(scope="session")
async def in_app(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[InProcess]:
    """One app in this process on one SQLite file, scripted provider (5 words a reply unless the message says
    otherwise), keepalive every 0.3 s; each test isolates itself with a fresh tenant."""
    db = f"sqlite:///{tmp_path_factory.mktemp('in-process') / 'app.db'}"
    store = await connect_store(db)
    try:
        config = ServeConfig(keepalive_seconds=0.3, max_reply_chars=None)
        async with in_process(store, ByContent(5, 0.0), db, config) as served:
            yield served
    finally:
        await store.close()


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    launch = Launcher(tmp_path)
    try:
        yield launch
    finally:
        launch.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'serve.db'}"


@pytest.fixture(autouse=True)
async def _close_openai_clients() -> AsyncIterator[None]:
    yield
    await close_openai_clients()


# -- servers shared by the tests of a run (each test isolates itself with a fresh tenant) --------------------
@pytest.fixture(scope="session")
def shared_launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    launch = Launcher(tmp_path_factory.mktemp("servers"))
    try:
        yield launch
    finally:
        launch.close()


@pytest.fixture(scope="session")
async def sqlite_served(shared_launcher: Launcher) -> Served:
    """One process on one SQLite file, scripted provider, keepalive every 0.3 s."""
    db = f"sqlite:///{shared_launcher.tmp / 'shared.db'}"
    return Served(db, [await shared_launcher.scripted(db, "--words", "5", "--keepalive", "0.3")])


@pytest.fixture(scope="session")
async def fault_pair(shared_launcher: Launcher, pg_url: str) -> AsyncIterator[FaultPair]:
    """Two real `mofa serve` processes on one PostgreSQL, their provider picked from OPENAI_BASE_URL: the
    loopback fault server (push a Reply before a turn to script it)."""
    from tests.support.fault_server import FaultServer

    async with FaultServer() as fault:
        env = {"OPENAI_BASE_URL": fault.base_url, "OPENAI_API_KEY": "sk-test-not-a-secret"}
        a, b = [await shared_launcher.mofa_serve(pg_url, env=env) for _ in range(2)]
        yield FaultPair(pg_url, [a, b], fault)


@pytest.fixture(scope="session")
async def pg_pair(shared_launcher: Launcher, pg_url: str) -> Served:
    """Two processes on one PostgreSQL schema, scripted provider."""
    a, b = [await shared_launcher.scripted(pg_url, "--words", "5") for _ in range(2)]
    return Served(pg_url, [a, b])


@pytest.fixture
async def client() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=30) as c:
        yield c
