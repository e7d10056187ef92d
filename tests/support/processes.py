"""Real uvicorn processes on loopback ports for the service and web-page tests: started with subprocess, always
killed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2

from tests.support.ports import free_port

__all__ = ["ROOT", "FaultPair", "Launcher", "Served", "Server"]

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


@dataclass
class Served:
    """A service the tests talk to over HTTP: its database URL and its processes (``url``: the first one's)."""

    db: str
    servers: list[Server]

    @property
    def url(self) -> str:
        return self.servers[0].url


@dataclass
class FaultPair(Served):
    fault: Any = None
