"""Throwaway PostgreSQL clusters for tests that restart, stop or re-authenticate a server.

The shared server at 127.0.0.1:5432 is never touched: each :class:`PgCluster` is its own ``initdb`` in a
temporary directory, listening on a free loopback port, started and stopped with ``pg_ctl``. When the
tests run as root the cluster runs as the ``postgres`` user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

from .ports import free_port

__all__ = ["PgCluster", "pg_bin"]


def pg_bin(name: str) -> str:
    """The newest installed PostgreSQL binary ``name`` (initdb, pg_ctl …)."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed")
    return path


class PgCluster:
    """``PgCluster(password=None).start()``; ``url()``, ``stop()``, ``restart()``, ``destroy()``.

    With ``password`` the cluster only accepts scram-sha-256 password logins (host and socket).
    """

    def __init__(self, *, password: str | None = None) -> None:
        self.password = password
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="mofa-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self._as_postgres = os.geteuid() == 0
        os.chmod(self.dir, 0o755)
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        args = [pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-E", "UTF8", "--no-sync"]
        if password is None:
            args += ["--auth=trust"]
        else:
            pwfile = self.dir / "pw"
            pwfile.write_text(password + "\n")
            if self._as_postgres:
                shutil.chown(pwfile, "postgres", "postgres")
            args += ["--auth=scram-sha-256", f"--pwfile={pwfile}"]
        self._run(args)

    def _run(self, args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(args)] if self._as_postgres else args
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{shlex.join(args)} failed: {result.stdout}{result.stderr}{log}")
        return result

    def _ctl(self, action: str, *extra: str, check: bool = True) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            [pg_bin("pg_ctl"), action, "-w", "-t", "60", "-D", str(self.data), "-l", str(self.log),
             "-o", opts, *extra],
            check=check,
        )

    def start(self) -> PgCluster:
        self._ctl("start")
        return self

    def stop(self, mode: str = "fast") -> None:
        """``mode``: smart, fast (disconnects clients) or immediate (like a crash)."""
        self._ctl("stop", "-m", mode)

    def restart(self, mode: str = "fast") -> None:
        self._ctl("restart", "-m", mode)

    def url(self, dbname: str = "postgres", *, user: str = "postgres", password: str | None = None) -> str:
        secret = self.password if password is None else password
        auth = f"{quote(user)}:{quote(secret, safe='')}" if secret else quote(user)
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{dbname}"

    def destroy(self) -> None:
        self._ctl("stop", "-m", "immediate", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PgCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()
