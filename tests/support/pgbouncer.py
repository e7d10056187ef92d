"""A PgBouncer in transaction pooling mode in front of the shared test server, for the contract suite.

Debian's ``pgbouncer`` is installed with apt-get when missing. Each instance has its own config in a
temporary directory and listens on a free loopback port; its one database entry points at the test
server with the schema under test as search_path (a startup ``options`` parameter cannot pass a pooler).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .ports import free_port

__all__ = ["PgBouncer", "ensure_pgbouncer"]


def ensure_pgbouncer() -> str:
    found = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None)
    if found:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", "pgbouncer"], check=True, env=env, capture_output=True,
                   timeout=600)
    return shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


class PgBouncer:
    """``PgBouncer(server_url).start()``; ``.url`` is where clients connect; ``.stop()``."""

    def __init__(self, server_url: str, *, pool_size: int = 10) -> None:
        parts = urlsplit(server_url)
        query = unquote(parts.query)
        schema = query.rsplit("search_path=", 1)[1].split("&")[0] if "search_path=" in query else "public"
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="mofa-pgb-"))
        os.chmod(self.dir, 0o755)
        user = parts.username or "postgres"
        server = (
            f"host={parts.hostname or '127.0.0.1'} port={parts.port or 5432} dbname={parts.path.lstrip('/')}"
            f" user={user} connect_query='SET search_path TO \"{schema}\"'"
        )
        (self.dir / "users.txt").write_text(f'"{user}" ""\n')
        ini = self.dir / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"mofa = {server}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.dir / 'users.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {pool_size}\n"
            "max_client_conn = 500\n"
            "ignore_startup_parameters = extra_float_digits\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\n"
            + ("user = postgres\n" if os.geteuid() == 0 else "")  # it refuses to run as root
        )
        if os.geteuid() == 0:
            for path in (self.dir, *self.dir.iterdir()):
                shutil.chown(path, "postgres", "postgres")
        self.ini = ini
        self.url = f"postgresql://{user}@127.0.0.1:{self.port}/mofa"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PgBouncer:
        import psycopg

        self._proc = subprocess.Popen([ensure_pgbouncer(), str(self.ini)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.url, prepare_threshold=None, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return self
            except psycopg.OperationalError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.dir / "pgbouncer.log").read_text() if (self.dir / "pgbouncer.log").exists() else ""
                    self.stop()
                    raise RuntimeError(f"pgbouncer did not start: {log}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
