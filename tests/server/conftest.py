"""Real uvicorn processes on loopback ports for the service tests: started with subprocess, always killed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from tests._llama_server import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when a machine or an OOM killer takes the process."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Launcher:
    tmp: Path
    started: list[Server] = field(default_factory=list)

    async def _start(self, cmd: list[str], env: dict[str, str], port: int) -> Server:
        log = self.tmp / f"server-{port}.log"
        full_env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", **env}
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT)
        server = Server(proc, port, log)
        self.started.append(server)
        async with httpx2.AsyncClient(timeout=2) as client:
            for _ in range(300):
                if proc.poll() is not None:
                    raise AssertionError(f"the server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
                try:
                    if (await client.get(f"{server.url}/healthz")).status_code == 200:
                        return server
                except httpx2.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"the server did not come up:\n{log.read_text()[-3000:]}")

    async def scripted(self, db: str, *args: str, port: int | None = None) -> Server:
        """The app with a scripted provider (tests/server/_app.py)."""
        port = port or free_port()
        cmd = [sys.executable, "-m", "tests.server._app", "--db", db, "--port", str(port), *args]
        return await self._start(cmd, {}, port)

    async def mofa_serve(self, db: str, *args: str, env: dict[str, str] | None = None) -> Server:
        """The real command: ``mofa serve``, with the provider it picks from the environment."""
        port = free_port()
        cmd = [sys.executable, "-m", "mofa_sdk.cli", "serve", "--db", db, "--port", str(port), *args]
        return await self._start(cmd, env or {}, port)

    def close(self) -> None:
        for server in self.started:
            server.stop()


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


# -- the official SDK's clients of a served process, closed when the test ends ------------------------------
_sdk_clients: list[openai.AsyncOpenAI] = []


def openai_client(base: str, key: str) -> openai.AsyncOpenAI:
    """An ``openai`` client of ``base``: closed after the test, since an open one leaks its sockets."""
    client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
    _sdk_clients.append(client)
    return client


@pytest.fixture(autouse=True)
async def _close_openai_clients() -> AsyncIterator[None]:
    yield
    while _sdk_clients:
        await _sdk_clients.pop().close()


# -- servers shared by the tests of a run (each test isolates itself with a fresh tenant) --------------------
@pytest.fixture(scope="session")
def shared_launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    launch = Launcher(tmp_path_factory.mktemp("servers"))
    try:
        yield launch
    finally:
        launch.close()


@dataclass
class Served:
    db: str
    servers: list[Server]

    @property
    def url(self) -> str:
        return self.servers[0].url


@pytest.fixture(scope="session")
async def sqlite_served(shared_launcher: Launcher) -> Served:
    """One process on one SQLite file, scripted provider, keepalive every 0.3 s."""
    db = f"sqlite:///{shared_launcher.tmp / 'shared.db'}"
    return Served(db, [await shared_launcher.scripted(db, "--words", "5", "--keepalive", "0.3")])


@dataclass
class FaultPair(Served):
    fault: Any = None


@pytest.fixture(scope="session")
async def fault_pair(shared_launcher: Launcher, pg_url: str) -> AsyncIterator[FaultPair]:
    """Two real `mofa serve` processes on one PostgreSQL, their provider picked from OPENAI_BASE_URL: the
    loopback fault server (push a Reply before a turn to script it)."""
    from tests.llm.fault_server import FaultServer

    async with FaultServer() as fault:
        env = {"OPENAI_BASE_URL": fault.base_url, "OPENAI_API_KEY": "sk-test-not-a-secret"}
        a, b = [await shared_launcher.mofa_serve(pg_url, env=env) for _ in range(2)]
        yield FaultPair(pg_url, [a, b], fault)


@pytest.fixture(scope="session")
async def pg_pair(shared_launcher: Launcher, pg_url: str) -> Served:
    """Two processes on one PostgreSQL schema, scripted provider."""
    a, b = [await shared_launcher.scripted(pg_url, "--words", "5") for _ in range(2)]
    return Served(pg_url, [a, b])


async def make_key(db: str, tenant: uuid.UUID | None = None, user: uuid.UUID | None = None) -> tuple[str, Any]:
    """A fresh key (and its row) for a fresh tenant, written through the library as `mofa keys create` does."""
    from mofa_sdk.persistence import connect_store, issue_api_key

    store = await connect_store(db)
    try:
        row, key = await issue_api_key(store, tenant or uuid.uuid4(), user or uuid.uuid4(), "test")
    finally:
        await store.close()
    return key, row


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class SSE:
    id: int | None
    event: str
    data: dict[str, Any]


async def read_events(response: httpx2.Response, *, stop_after: int | None = None) -> tuple[list[SSE], list[str]]:
    """Parse an event stream: the events, and the comment lines seen."""
    events: list[SSE] = []
    comments: list[str] = []
    fields: dict[str, str] = {}
    # one line iterator per response, so that a test can read some events, act, then read on
    lines = response.extensions.setdefault("mofa_lines", response.aiter_lines())
    async for line in lines:
        if line.startswith(":"):
            comments.append(line)
            continue
        if line == "":
            if fields:
                events.append(SSE(int(fields["id"]) if "id" in fields else None, fields.get("event", "message"),
                                  json.loads(fields.get("data", "null"))))
                fields = {}
                deltas = sum(1 for e in events if e.event == "delta")
                if stop_after is not None and deltas >= stop_after:
                    break
            continue
        name, _, value = line.partition(":")
        fields[name] = value[1:] if value.startswith(" ") else value
    return events, comments


def text_of(events: list[SSE]) -> str:
    return "".join(e.data["text"] for e in events if e.event == "delta")


@pytest.fixture
async def client() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=30) as c:
        yield c
